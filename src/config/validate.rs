//! Semantic validation: turns the raw serde shapes into the validated model, collecting every
//! problem with its JSON path instead of stopping at the first (issue 4, `dialback check`).
//!
//! I/O is injected: environment look-ups, text file reads (password files) and, optionally,
//! byte reads (prompt WAV headers) arrive as closures, so this module is testable without a
//! file system.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigWarning, Problem};
use super::model::*;
use super::raw::*;
use super::uri::{CallbackNumber, SipUri};
use super::{wav, Secret};

/// Characters allowed in a DTMF pattern (RFC 4733 §3.2 events 0-15: 0-9 * # A-D).
const DTMF_CHARS: &str = "0123456789*#ABCD";
const DIGIT_PLACEHOLDER: &str = "{digit}";
const MIN_EXPIRES_S: u32 = 10;
const MIN_MESSAGE_BYTES: u32 = 1024;
const TX_LEVEL_MIN_DBM0: i32 = -43;
const TX_LEVEL_MAX_DBM0: i32 = -6;
const MAX_WINDOW_S: u32 = 3600;

pub(crate) type ReadBytes<'a> = &'a dyn Fn(&Path) -> io::Result<Vec<u8>>;

pub(crate) struct Validator<'a> {
    pub base_dir: PathBuf,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub read_file: &'a dyn Fn(&Path) -> io::Result<String>,
    /// `None`: prompt files are not opened (see `config::parse`).
    pub read_bytes: Option<ReadBytes<'a>>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigWarning>,
}

impl Validator<'_> {
    /// Validates everything; `Some` exactly when no error was recorded.
    pub fn dialplan(&mut self, raw: RawDialplan) -> Option<Dialplan> {
        // Sections are checked in the order of the example file so that errors read top down;
        // admins need the challenge realm from `security` first.
        let realm = raw.security.realm.clone();
        let trunks = self.trunks(raw.trunks);
        let limits = self.limits(raw.limits);
        let admins = self.admins(raw.admins, &realm);
        let signal = self.signal(raw.signal);
        let routes = self.routes(raw.routes);
        let callback = self.callback(raw.callback);
        let security = self.security(raw.security);
        let audit = Audit {
            path: self.resolve(&raw.audit.path),
            fsync: raw.audit.fsync,
        };
        let media = self.media(raw.media);
        if let Some(signal) = &signal {
            // The call flow caps every entry at max_digits keys: the DTMF signal must fit.
            let keys = signal.dtmf.prefix.chars().count()
                + signal
                    .dtmf
                    .suffix
                    .as_ref()
                    .map_or(0, |s| 1 + s.chars().count());
            if (media.max_digits as usize) < keys {
                self.err(
                    "$.media.max_digits",
                    Problem::BelowOther {
                        value: i64::from(media.max_digits),
                        other: "the keys of signal.dtmf",
                        min: keys as i64,
                    },
                );
            }
        }
        let modem = self.modem(raw.modem);
        if !self.errors.is_empty() {
            return None;
        }
        // Every builder that returns `None` has recorded an error, so with no errors all are
        // `Some`; the let-else keeps that invariant panic-free.
        let (Some(trunks), Some(admins), Some(signal), Some(routes), Some(modem)) =
            (trunks, admins, signal, routes, modem)
        else {
            return None;
        };
        Some(Dialplan {
            trunks,
            limits,
            admins,
            signal,
            routes,
            callback,
            security,
            audit,
            media,
            modem,
        })
    }

    fn err(&mut self, path: impl Into<String>, problem: Problem) {
        self.errors.push(ConfigError::Invalid {
            path: path.into(),
            problem,
        });
    }

    fn resolve(&self, p: &str) -> PathBuf {
        // Path::join keeps absolute paths as they are.
        self.base_dir.join(p)
    }

    fn at_least(&mut self, path: &str, value: u32, min: u32) {
        if value < min {
            self.err(
                path,
                Problem::TooSmall {
                    value: value.into(),
                    min: min.into(),
                },
            );
        }
    }

    fn within(&mut self, path: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.err(path, Problem::OutOfRange { value, min, max });
        }
    }

    fn sip_uri(&mut self, path: &str, value: &str) -> Option<SipUri> {
        SipUri::parse(value)
            .map_err(|reason| {
                self.err(
                    path,
                    Problem::BadUri {
                        value: value.to_owned(),
                        reason,
                    },
                )
            })
            .ok()
    }

    fn socket_addr(&mut self, path: &str, value: &str) -> Option<SocketAddr> {
        value
            .parse::<SocketAddr>()
            .map_err(|_| {
                self.err(
                    path,
                    Problem::NotSocketAddr {
                        value: value.to_owned(),
                    },
                )
            })
            .ok()
    }

    /// The address a trunk puts in Via, Contact and SDP: `advertise` when given (never a
    /// wildcard), else `listen`, which then must not be a wildcard either — `0.0.0.0` in a
    /// Contact or `c=` line is unreachable (RFC 3264 §8.4 even reads it as hold).
    fn advertise(
        &mut self,
        name: &str,
        listen: Option<SocketAddr>,
        raw: Option<&str>,
    ) -> Option<SocketAddr> {
        let path = format!("$.{name}.advertise");
        match raw {
            Some(value) => {
                let addr = self.socket_addr(&path, value)?;
                if addr.ip().is_unspecified() {
                    self.err(
                        path,
                        Problem::WildcardAdvertise {
                            addr: addr.to_string(),
                        },
                    );
                    return None;
                }
                Some(addr)
            }
            None => {
                let listen = listen?;
                if listen.ip().is_unspecified() {
                    self.err(
                        format!("$.{name}.listen"),
                        Problem::WildcardNeedsAdvertise {
                            addr: listen.to_string(),
                        },
                    );
                    return None;
                }
                Some(listen)
            }
        }
    }

    fn non_empty(&mut self, path: &str, value: &str) {
        if value.trim().is_empty() {
            self.err(path, Problem::Empty);
        }
    }

    // ---- trunks -------------------------------------------------------------------------

    fn trunks(&mut self, raw: RawTrunks) -> Option<Trunks> {
        // All trunks must listen on distinct addresses: each trunk is told apart by the
        // socket a request arrives on (DESIGN.md "The three trunks"). Checked on the raw
        // strings so that it is reported even when another field of a trunk is wrong
        // (unparsable addresses are reported by the trunk builders).
        let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
        let mut distinct = true;
        for (listen, name) in [
            (&raw.user.listen, "trunks.user"),
            (&raw.admin.listen, "trunks.admin"),
            (&raw.originate.listen, "trunks.originate"),
        ] {
            let Ok(addr) = listen.parse::<SocketAddr>() else {
                continue;
            };
            if let Some(other) = seen.insert(addr, name) {
                distinct = false;
                self.err(
                    format!("$.{name}.listen"),
                    Problem::DuplicateListen {
                        addr: addr.to_string(),
                        other: format!("$.{other}.listen"),
                    },
                );
            }
        }
        let user = self.registering_trunk("trunks.user", raw.user);
        let admin = self.registering_trunk("trunks.admin", raw.admin);
        let originate = self.originate_trunk(raw.originate);
        if !distinct {
            return None;
        }
        Some(Trunks {
            user: user?,
            admin: admin?,
            originate: originate?,
        })
    }

    fn registering_trunk(
        &mut self,
        name: &str,
        raw: RawRegisteringTrunk,
    ) -> Option<RegisteringTrunk> {
        let p = |f: &str| format!("$.{name}.{f}");
        let listen = self.socket_addr(&p("listen"), &raw.listen);
        let advertise = self.advertise(name, listen, raw.advertise.as_deref());
        let registrar = match &raw.registrar {
            Some(r) => self.sip_uri(&p("registrar"), r).map(Some),
            None if raw.register => {
                self.err(p("registrar"), Problem::RegistrarRequired);
                None
            }
            None => Some(None),
        };
        if !raw.register && raw.registrar.is_some() {
            self.warnings.push(ConfigWarning::UnusedRegistrar {
                path: format!("{name}.registrar"),
            });
        }
        let outbound_proxy = match &raw.outbound_proxy {
            Some(r) => self.sip_uri(&p("outbound_proxy"), r).map(Some),
            None => Some(None),
        };
        let aor = self.sip_uri(&p("aor"), &raw.aor);
        if raw.expires_s < MIN_EXPIRES_S {
            self.err(
                p("expires_s"),
                Problem::TooSmall {
                    value: raw.expires_s.into(),
                    min: MIN_EXPIRES_S.into(),
                },
            );
        }
        let password = self.password(
            name,
            raw.auth_username.as_deref(),
            raw.password,
            raw.password_env,
            raw.password_file,
        );
        Some(RegisteringTrunk {
            listen: listen?,
            advertise: advertise?,
            transport: raw.transport,
            registrar: registrar?,
            outbound_proxy: outbound_proxy?,
            aor: aor?,
            auth_username: raw.auth_username,
            password: password?,
            expires_s: raw.expires_s,
            register: raw.register,
        })
    }

    fn originate_trunk(&mut self, raw: RawOriginateTrunk) -> Option<OriginateTrunk> {
        let name = "trunks.originate";
        let p = |f: &str| format!("$.{name}.{f}");
        let listen = self.socket_addr(&p("listen"), &raw.listen);
        let advertise = self.advertise(name, listen, raw.advertise.as_deref());
        let proxy = self.sip_uri(&p("proxy"), &raw.proxy);
        let from = self.sip_uri(&p("from"), &raw.from);
        let password = self.password(
            name,
            raw.auth_username.as_deref(),
            raw.password,
            raw.password_env,
            raw.password_file,
        );
        let mut allow_sources = Vec::new();
        let mut sources_ok = true;
        for (i, s) in raw.allow_sources.iter().enumerate() {
            match self.socket_addr(&format!("$.{name}.allow_sources[{i}]"), s) {
                Some(a) => allow_sources.push(a),
                None => sources_ok = false,
            }
        }
        if raw.allow_sources.is_empty() {
            if let Some(proxy) = &proxy {
                match proxy_source(proxy) {
                    Ok(addr) => allow_sources.push(addr),
                    Err(host) => {
                        sources_ok = false;
                        self.err(p("allow_sources"), Problem::AllowSourcesNeeded { host });
                    }
                }
            }
        }
        if !sources_ok {
            return None;
        }
        Some(OriginateTrunk {
            listen: listen?,
            advertise: advertise?,
            transport: raw.transport,
            proxy: proxy?,
            from: from?,
            auth_username: raw.auth_username,
            password: password?,
            allow_sources,
        })
    }

    /// Resolves a trunk's password. Outer `None`: an error was recorded.
    fn password(
        &mut self,
        name: &str,
        auth_username: Option<&str>,
        inline: Option<String>,
        env: Option<String>,
        file: Option<String>,
    ) -> Option<Option<Secret>> {
        if let Some(user) = auth_username {
            self.non_empty(&format!("$.{name}.auth_username"), user);
        }
        let given = [inline.is_some(), env.is_some(), file.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            self.err(format!("$.{name}"), Problem::ConflictingPasswordSources);
            return None;
        }
        if let Some(pw) = inline {
            self.warnings.push(ConfigWarning::InlinePassword {
                path: name.to_owned(),
            });
            return Some(Some(Secret::new(pw)));
        }
        if let Some(var) = env {
            let path = format!("$.{name}.password_env");
            if var.is_empty() {
                self.err(path, Problem::Empty);
                return None;
            }
            return match (self.env)(&var) {
                Some(v) => Some(Some(Secret::new(v))),
                None => {
                    self.err(path, Problem::EnvUnset { var });
                    None
                }
            };
        }
        if let Some(file) = file {
            let path = format!("$.{name}.password_file");
            let resolved = self.resolve(&file);
            return match (self.read_file)(&resolved) {
                Ok(text) => {
                    // A trailing newline is how editors and `echo` leave files; it is never
                    // part of the password.
                    let pw = text.strip_suffix('\n').unwrap_or(&text);
                    let pw = pw.strip_suffix('\r').unwrap_or(pw);
                    if pw.is_empty() {
                        self.err(path, Problem::EmptyPasswordFile { path: resolved });
                        None
                    } else {
                        Some(Some(Secret::new(pw.to_owned())))
                    }
                }
                Err(e) => {
                    self.err(
                        path,
                        Problem::PasswordFile {
                            path: resolved,
                            reason: e.to_string(),
                        },
                    );
                    None
                }
            };
        }
        if auth_username.is_some() {
            self.err(format!("$.{name}"), Problem::MissingPassword);
            return None;
        }
        Some(None)
    }

    // ---- limits -------------------------------------------------------------------------

    fn limits(&mut self, raw: RawLimits) -> Limits {
        self.at_least(
            "$.limits.max_message_bytes",
            raw.max_message_bytes,
            MIN_MESSAGE_BYTES,
        );
        self.at_least("$.limits.max_headers", raw.max_headers, 1);
        self.at_least("$.limits.per_source_rate", raw.per_source_rate, 1);
        self.at_least("$.limits.max_transactions", raw.max_transactions, 1);
        self.at_least("$.limits.max_dialogs", raw.max_dialogs, 1);
        self.at_least("$.limits.queue_depth", raw.queue_depth, 1);
        if raw.per_source_burst < raw.per_source_rate {
            self.err(
                "$.limits.per_source_burst",
                Problem::BelowOther {
                    value: raw.per_source_burst.into(),
                    other: "per_source_rate",
                    min: raw.per_source_rate.into(),
                },
            );
        }
        Limits {
            max_message_bytes: raw.max_message_bytes,
            max_headers: raw.max_headers,
            per_source_rate: raw.per_source_rate,
            per_source_burst: raw.per_source_burst,
            max_transactions: raw.max_transactions,
            max_dialogs: raw.max_dialogs,
            queue_depth: raw.queue_depth,
        }
    }

    // ---- admins -------------------------------------------------------------------------

    fn admins(&mut self, raw: Vec<RawAdmin>, realm: &str) -> Option<Vec<Admin>> {
        let mut digits: HashMap<u8, usize> = HashMap::new();
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, a) in raw.into_iter().enumerate() {
            let p = |f: &str| format!("$.admins[{i}].{f}");
            let digit = match u8::try_from(a.digit).ok().and_then(AdminDigit::new) {
                Some(d) => {
                    if let Some(other) = digits.insert(d.value(), i) {
                        self.err(
                            p("digit"),
                            Problem::DuplicateDigit {
                                digit: d.value(),
                                other: format!("$.admins[{other}]"),
                            },
                        );
                    }
                    Some(d)
                }
                None => {
                    self.err(p("digit"), Problem::DigitOutOfRange { digit: a.digit });
                    None
                }
            };
            self.non_empty(&p("id"), &a.id);
            if !a.id.is_empty() && !a.id.chars().all(|c| DTMF_CHARS.contains(c)) {
                self.warnings.push(ConfigWarning::IdNotDialable {
                    path: format!("admins[{i}].id"),
                });
            }
            if let Some(other) = ids.insert(a.id.clone(), i) {
                self.err(
                    p("id"),
                    Problem::DuplicateId {
                        id: a.id.clone(),
                        other: format!("$.admins[{other}]"),
                    },
                );
            }
            // Issue 4: only hashes belong in the dialplan, never a plaintext PIN.
            let pin_ok = a.pin.starts_with("$argon2id$");
            if !pin_ok {
                self.err(p("pin"), Problem::PinNotArgon2id);
            }
            let digest = self.digest(&p("digest"), a.digest, realm);
            let numbers = self.numbers(&p("numbers"), &a.numbers);
            match (digit, digest, numbers, pin_ok) {
                (Some(digit), Some(digest), Some(numbers), true) => out.push(Admin {
                    digit,
                    id: a.id,
                    name: a.name,
                    pin: Secret::new(a.pin),
                    digest,
                    numbers,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn digest(&mut self, path: &str, raw: RawDigest, realm: &str) -> Option<DigestCredentials> {
        let realm = match raw.realm {
            Some(r) => {
                self.non_empty(&format!("{path}.realm"), &r);
                if r != realm && !r.trim().is_empty() {
                    // RFC 7616 §3.3: the challenge names one realm before the user is known,
                    // and HA1 hashes the realm, so a different realm can never verify.
                    self.warnings.push(ConfigWarning::RealmMismatch {
                        path: format!("{}.realm", path.trim_start_matches("$.")),
                        realm: r.clone(),
                        challenge_realm: realm.to_owned(),
                    });
                }
                r
            }
            None => realm.to_owned(),
        };
        let mut ok = true;
        let mut ha1 = |v: &Option<String>, field: &str, len: usize| match v {
            Some(h) if is_lower_hex(h, len) => Some(Secret::new(h.clone())),
            Some(_) => {
                ok = false;
                self.err(format!("{path}.{field}"), Problem::BadHa1 { len });
                None
            }
            None => None,
        };
        let ha1_md5 = ha1(&raw.ha1_md5, "ha1_md5", 32);
        let ha1_sha256 = ha1(&raw.ha1_sha256, "ha1_sha256", 64);
        if raw.ha1_md5.is_none() && raw.ha1_sha256.is_none() {
            self.err(path, Problem::NoHa1);
            return None;
        }
        ok.then_some(DigestCredentials {
            realm,
            ha1_md5,
            ha1_sha256,
        })
    }

    fn numbers(&mut self, path: &str, raw: &[String]) -> Option<Vec<CallbackNumber>> {
        if raw.is_empty() {
            self.err(path, Problem::Empty);
            return None;
        }
        let mut out = Vec::with_capacity(raw.len());
        for (i, n) in raw.iter().enumerate() {
            match CallbackNumber::parse(n) {
                Ok(n) => out.push(n),
                Err(reason) => self.err(
                    format!("{path}[{i}]"),
                    Problem::BadUri {
                        value: n.clone(),
                        reason,
                    },
                ),
            }
        }
        (out.len() == raw.len()).then_some(out)
    }

    // ---- signal and routes --------------------------------------------------------------

    fn signal(&mut self, raw: RawSignal) -> Option<Signal> {
        if !(1..=MAX_WINDOW_S).contains(&raw.window_s) {
            self.err(
                "$.signal.window_s",
                Problem::OutOfRange {
                    value: raw.window_s.into(),
                    min: 1,
                    max: MAX_WINDOW_S.into(),
                },
            );
        }
        let text = self.pattern("$.signal.text", &raw.text, raw.separate_digit, None);
        let dtmf = self.pattern(
            "$.signal.dtmf",
            &raw.dtmf,
            raw.separate_digit,
            Some(DTMF_CHARS),
        );
        Some(Signal {
            text: text?,
            dtmf: dtmf?,
            window_s: raw.window_s,
            separate_digit: raw.separate_digit,
        })
    }

    fn pattern(
        &mut self,
        path: &str,
        raw: &str,
        separate_digit: bool,
        alphabet: Option<&str>,
    ) -> Option<SignalPattern> {
        let count = raw.matches(DIGIT_PLACEHOLDER).count();
        let mut ok = true;
        match (separate_digit, count) {
            (false, 0) => {
                ok = false;
                self.err(path, Problem::MissingDigitPlaceholder);
            }
            (true, n) if n > 0 => {
                ok = false;
                self.err(path, Problem::UnexpectedDigitPlaceholder);
            }
            (false, n) if n > 1 => {
                ok = false;
                self.err(path, Problem::RepeatedDigitPlaceholder { count: n });
            }
            _ => {}
        }
        let literal = raw.replace(DIGIT_PLACEHOLDER, "");
        if literal.trim().is_empty() {
            // A bare "{digit}" would make any single digit a start signal.
            ok = false;
            self.err(path, Problem::Empty);
        }
        if let Some(alphabet) = alphabet {
            if let Some(ch) = literal.chars().find(|c| !alphabet.contains(*c)) {
                ok = false;
                self.err(path, Problem::BadDtmfChar { ch });
            }
        }
        if !ok {
            return None;
        }
        Some(match raw.split_once(DIGIT_PLACEHOLDER) {
            Some((prefix, suffix)) => SignalPattern {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
            },
            None => SignalPattern {
                prefix: raw.to_owned(),
                suffix: None,
            },
        })
    }

    fn routes(&mut self, raw: RawRoutes) -> Option<Routes> {
        let user = self.route("$.routes.user", raw.user, 404);
        let admin = self.route("$.routes.admin", raw.admin, 403);
        Some(Routes {
            user: user?,
            admin: admin?,
        })
    }

    fn route(&mut self, path: &str, raw: RawRoute, default_code: u16) -> Option<Route> {
        let otherwise = match raw.otherwise {
            None => Otherwise::Reject(default_code),
            Some(RawOtherwise::Reject(code)) => {
                // RFC 3261 §21.4 / §21.6: a refusal is a 4xx or 6xx final response.
                if (400..=499).contains(&code) || (600..=699).contains(&code) {
                    Otherwise::Reject(code)
                } else {
                    self.err(
                        format!("{path}.otherwise.reject"),
                        Problem::BadRejectCode { code },
                    );
                    return None;
                }
            }
            Some(RawOtherwise::Redirect(uri)) => {
                Otherwise::Redirect(self.sip_uri(&format!("{path}.otherwise.redirect"), &uri)?)
            }
        };
        Some(Route {
            message: raw.message,
            call: raw.call,
            otherwise,
        })
    }

    // ---- callback, security, media, modem -----------------------------------------------

    fn callback(&mut self, raw: RawCallback) -> Callback {
        self.within("$.callback.delay_ms", raw.delay_ms.into(), 0, 60_000);
        self.within(
            "$.callback.ring_timeout_s",
            raw.ring_timeout_s.into(),
            1,
            300,
        );
        self.at_least(
            "$.callback.max_per_admin_per_hour",
            raw.max_per_admin_per_hour,
            1,
        );
        self.at_least("$.callback.answered_hold_s", raw.answered_hold_s, 1);
        Callback {
            delay_ms: raw.delay_ms,
            ring_timeout_s: raw.ring_timeout_s,
            max_per_admin_per_hour: raw.max_per_admin_per_hour,
            on_diversion: raw.on_diversion,
            answered_hold_s: raw.answered_hold_s,
        }
    }

    fn security(&mut self, raw: RawSecurity) -> Security {
        for (field, v) in [
            ("tries_per_call", raw.tries_per_call),
            ("max_failures", raw.max_failures),
            ("failure_window_s", raw.failure_window_s),
            ("lock_s", raw.lock_s),
            ("per_source_max_failures", raw.per_source_max_failures),
            ("nonce_ttl_s", raw.nonce_ttl_s),
        ] {
            self.at_least(&format!("$.security.{field}"), v, 1);
        }
        self.non_empty("$.security.realm", &raw.realm);
        self.non_empty("$.security.state_path", &raw.state_path);
        let mut seen: Vec<&str> = Vec::new();
        for name in &raw.digest_algorithms {
            let known = ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"].contains(&name.as_str());
            if !known || seen.contains(&name.as_str()) {
                self.err(
                    "$.security.digest_algorithms",
                    Problem::BadDigestAlgorithm { name: name.clone() },
                );
            }
            seen.push(name);
        }
        if raw.digest_algorithms.is_empty() {
            self.err("$.security.digest_algorithms", Problem::Empty);
        }
        Security {
            digest_algorithms: raw.digest_algorithms.clone(),
            tries_per_call: raw.tries_per_call,
            max_failures: raw.max_failures,
            failure_window_s: raw.failure_window_s,
            lock_s: raw.lock_s,
            per_source_max_failures: raw.per_source_max_failures,
            nonce_ttl_s: raw.nonce_ttl_s,
            state_path: self.resolve(&raw.state_path),
            realm: raw.realm,
        }
    }

    fn media(&mut self, raw: RawMedia) -> Media {
        let [low, high] = raw.rtp_ports;
        // RFC 3550 §11: RTP on an even port, RTCP on the next odd one.
        if low % 2 != 0 || low >= high || low == 0 {
            self.err("$.media.rtp_ports", Problem::BadPortRange { low, high });
        }
        self.within("$.media.jitter_ms", raw.jitter_ms.into(), 0, 1000);
        self.at_least("$.media.rtp_timeout_s", raw.rtp_timeout_s, 1);
        self.within(
            "$.media.dtmf_min_tone_ms",
            raw.dtmf_min_tone_ms.into(),
            20,
            200,
        );
        self.within(
            "$.media.dtmf_min_pause_ms",
            raw.dtmf_min_pause_ms.into(),
            20,
            200,
        );
        self.at_least(
            "$.media.first_digit_timeout_s",
            raw.first_digit_timeout_s,
            1,
        );
        self.at_least(
            "$.media.inter_digit_timeout_s",
            raw.inter_digit_timeout_s,
            1,
        );
        self.within("$.media.max_digits", raw.max_digits.into(), 1, 256);
        let mut prompts = BTreeMap::new();
        for (name, file) in raw.prompts {
            let path = format!("$.media.prompts.{name}");
            if !PROMPT_NAMES.contains(&name.as_str()) {
                self.err(
                    path.clone(),
                    Problem::UnknownPromptName { name: name.clone() },
                );
            }
            self.non_empty(&path, &file);
            let resolved = self.resolve(&file);
            if let Some(read_bytes) = self.read_bytes {
                let problem = match read_bytes(&resolved) {
                    Ok(bytes) => wav::inspect(&bytes)
                        .err()
                        .map(|reason| Problem::PromptFormat {
                            path: resolved.clone(),
                            reason,
                        }),
                    Err(e) => Some(Problem::PromptUnreadable {
                        path: resolved.clone(),
                        reason: e.to_string(),
                    }),
                };
                if let Some(problem) = problem {
                    self.err(path, problem);
                }
            }
            prompts.insert(name, resolved);
        }
        Media {
            rtp_ports: (low, high),
            jitter_ms: raw.jitter_ms,
            rtp_timeout_s: raw.rtp_timeout_s,
            dtmf_min_tone_ms: raw.dtmf_min_tone_ms,
            dtmf_min_pause_ms: raw.dtmf_min_pause_ms,
            first_digit_timeout_s: raw.first_digit_timeout_s,
            inter_digit_timeout_s: raw.inter_digit_timeout_s,
            max_digits: raw.max_digits,
            prompts,
        }
    }

    fn modem(&mut self, raw: RawModem) -> Option<Modem> {
        let mut ok = true;
        if raw.modulations.is_empty() {
            ok = false;
            self.err("$.modem.modulations", Problem::Empty);
        }
        for (i, m) in raw.modulations.iter().enumerate() {
            if raw.modulations[..i].contains(m) {
                ok = false;
                self.err(
                    format!("$.modem.modulations[{i}]"),
                    Problem::DuplicateModulation {
                        name: format!("{m:?}").to_lowercase(),
                    },
                );
            }
        }
        let target = parse_modem_target(&raw.target);
        if target.is_none() {
            self.err(
                "$.modem.target",
                Problem::BadModemTarget {
                    value: raw.target.clone(),
                },
            );
        }
        let tx_level = i8::try_from(raw.tx_level_dbm0)
            .ok()
            .filter(|l| (TX_LEVEL_MIN_DBM0..=TX_LEVEL_MAX_DBM0).contains(&i32::from(*l)));
        if tx_level.is_none() {
            self.err(
                "$.modem.tx_level_dbm0",
                Problem::OutOfRange {
                    value: raw.tx_level_dbm0.into(),
                    min: TX_LEVEL_MIN_DBM0.into(),
                    max: TX_LEVEL_MAX_DBM0.into(),
                },
            );
        }
        self.at_least("$.modem.idle_s", raw.idle_s, 1);
        self.at_least("$.modem.login_tries", raw.login_tries, 1);
        self.within(
            "$.modem.connect_timeout_s",
            raw.connect_timeout_s.into(),
            1,
            120,
        );
        if raw.max_s < raw.idle_s {
            self.err(
                "$.modem.max_s",
                Problem::BelowOther {
                    value: raw.max_s.into(),
                    other: "idle_s",
                    min: raw.idle_s.into(),
                },
            );
        }
        if !ok {
            return None;
        }
        Some(Modem {
            modulations: raw.modulations,
            target: target?,
            tx_level_dbm0: tx_level?,
            idle_s: raw.idle_s,
            max_s: raw.max_s,
            login_tries: raw.login_tries,
            connect_timeout_s: raw.connect_timeout_s,
        })
    }
}

/// The default allowed source for the originate trunk: the proxy's address, when it is an
/// IP literal. `Err(host)` when it is a name (we do not resolve names here: no I/O).
fn proxy_source(proxy: &SipUri) -> Result<SocketAddr, String> {
    let (host, port) = proxy.host_port();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    // RFC 3263 §4.2 default ports: 5060, or 5061 for sips.
    let port = port.unwrap_or(if proxy.is_secure() { 5061 } else { 5060 });
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| host.to_owned())
}

fn parse_modem_target(s: &str) -> Option<ModemTarget> {
    if s == "console" {
        return Some(ModemTarget::Console);
    }
    let (host, port) = s.strip_prefix("tcp:")?.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
    host_ok.then(|| ModemTarget::Tcp {
        host: host.to_owned(),
        port,
    })
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
