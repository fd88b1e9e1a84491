//! `dialback dial-in`: the administrator's end in one command (issue 6 point 1). It registers
//! as the administrator's number at a PBX (RFC 3261 §10) or listens directly, sends the start
//! signal by SIP MESSAGE (digest, RFC 3261 §22) or by a call carrying `ID # PIN # signal` as
//! RFC 4733 events or in-band DTMF, waits for the callback and answers only the gate's
//! originate trunk, runs the answering modem and connects the terminal to it: raw mode on a
//! TTY, plain pipes otherwise (stdin → modem, modem → stdout) so scripts can drive it.
//!
//! Settings come from flags, environment variables (`DIALBACK_DIALIN_*`) and a small JSON
//! file, in that order of precedence ([`DialInFile`], [`resolve`]). Secrets (the PBX password,
//! the gate's SIP password, the PIN) are never flags: a file named in the settings, an
//! environment variable, or a prompt without echo ([`read_secret`]).
//!
//! Every failure is one [`DialInError`] with a clear message; the binary maps settings errors
//! to exit code 2 and runtime failures to 1. Wrong credentials look like "no callback within
//! N s": the gate gives no oracle. The SIP work is [`crate::runtime::admin`], shared with
//! `dialback demo`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gate::Secret;
use crate::modem::v22bis::Rate;
use crate::runtime::admin::{
    self, AdminError, AdminUa, CallbackFilter, KeyMode, Progress, SignalCredentials, UaConfig,
    UaRegistration,
};
use crate::runtime::modem_media::{LineEvent, LineModem};
use crate::sdp::Codec;

/// Environment variable prefix of every setting (`DIALBACK_DIALIN_GATE`, ...).
pub const ENV_PREFIX: &str = "DIALBACK_DIALIN_";
/// Secrets from the environment.
pub const ENV_PBX_PASSWORD: &str = "DIALBACK_DIALIN_PBX_PASSWORD";
pub const ENV_PASSWORD: &str = "DIALBACK_DIALIN_PASSWORD";
pub const ENV_PIN: &str = "DIALBACK_DIALIN_PIN";

/// Default wait for the callback.
pub const DEFAULT_WAIT_S: u64 = 60;
/// Default wait for the modems to train after answer.
const DEFAULT_CONNECT_S: u64 = 30;
/// Registration and its refreshes.
const DEFAULT_EXPIRES_S: u32 = 300;
const REGISTER_WITHIN: Duration = Duration::from_secs(10);
/// After stdin ends: hang up once the line has been quiet this long (output drained).
const EOF_QUIET: Duration = Duration::from_secs(4);
/// Ctrl-] ends the session in raw mode (as telnet's escape).
const ESCAPE: u8 = 0x1d;
/// V.25 answer tone length the answering modem sends before training (§4.1: 2.6–4.0 s).
const ANSWER_TONE: Duration = Duration::from_millis(3300);

/// The settings file (and the shape flags and environment are gathered into). Every field is
/// optional here; [`resolve`] says what is required.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DialInFile {
    /// Local SIP address (`IP:PORT`). Required when not registering (the gate's dialplan
    /// names it as the administrator's number); default `127.0.0.1:0` with a PBX.
    pub listen: Option<String>,
    /// The PBX's registrar URI (`sip:HOST[:PORT]`, IP literal). Absent: no PBX.
    pub registrar: Option<String>,
    /// Where requests go when registering (default: the registrar).
    pub outbound_proxy: Option<String>,
    /// The administrator's number (user part of the AOR and Contact).
    pub user: Option<String>,
    /// Full AOR (default `sip:USER@REGISTRAR-HOST`).
    pub aor: Option<String>,
    /// PBX digest username (default: `user`).
    pub auth_user: Option<String>,
    pub pbx_password_file: Option<PathBuf>,
    pub expires_s: Option<u32>,
    /// The gate's number as a URI (`sip:gate-admin@PBX` or the gate's address).
    pub gate: Option<String>,
    /// The administrator's ID at the gate (digest username, DTMF ID).
    pub admin_id: Option<String>,
    /// The administrator recognition digit.
    pub digit: Option<u8>,
    pub password_file: Option<PathBuf>,
    pub pin_file: Option<PathBuf>,
    /// `message` or `dtmf`.
    pub via: Option<String>,
    /// DTMF as in-band tones instead of RFC 4733.
    pub inband: Option<bool>,
    /// The MESSAGE signal pattern (default `MAINTAIN-{digit}`).
    pub signal_text: Option<String>,
    /// The DTMF signal pattern (default `*62468246*{digit}#`).
    pub signal_dtmf: Option<String>,
    /// The gate's originate trunk: its From user (e.g. `gate-out`) or From URI.
    pub callback_from: Option<String>,
    /// The address the callback must come from (`IP` or `IP:PORT`; default: the PBX's IP, or
    /// the gate's when there is no PBX).
    pub callback_source: Option<String>,
    /// `v22bis`, `v22`, `v21` or `bell103`.
    pub modulation: Option<String>,
    pub wait_s: Option<u64>,
    pub connect_s: Option<u64>,
    /// Print each SIP message's start line.
    pub ladder: Option<bool>,
}

impl DialInFile {
    /// `self`'s values where set, `base`'s otherwise.
    pub fn over(self, base: DialInFile) -> DialInFile {
        macro_rules! pick {
            ($($f:ident),*) => { DialInFile { $($f: self.$f.or(base.$f)),* } };
        }
        pick!(
            listen,
            registrar,
            outbound_proxy,
            user,
            aor,
            auth_user,
            pbx_password_file,
            expires_s,
            gate,
            admin_id,
            digit,
            password_file,
            pin_file,
            via,
            inband,
            signal_text,
            signal_dtmf,
            callback_from,
            callback_source,
            modulation,
            wait_s,
            connect_s,
            ladder
        )
    }
}

/// How the start signal goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Message {
        text: String,
    },
    Call {
        keys_after_pin: String,
        mode: KeyMode,
    },
}

/// A PBX to register at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbx {
    pub registrar_uri: String,
    pub destination: SocketAddr,
    pub aor: String,
    pub auth_user: String,
    pub password_file: Option<PathBuf>,
    pub expires_s: u32,
}

/// Settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    pub pbx: Option<Pbx>,
    pub user: String,
    pub gate: String,
    pub admin_id: String,
    pub via: Via,
    pub password_file: Option<PathBuf>,
    pub pin_file: Option<PathBuf>,
    pub filter_from: String,
    pub filter_source: Option<SocketAddr>,
    pub modem: LineModem,
    pub max_rate: Rate,
    pub wait: Duration,
    pub connect: Duration,
    pub ladder: bool,
}

/// Bad settings (exit code 2).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(
        "missing setting `{name}` (flag --{flag}, env {ENV_PREFIX}{env}, or file key `{name}`)"
    )]
    Missing {
        name: &'static str,
        flag: &'static str,
        env: &'static str,
    },
    #[error("setting `{name}`: {value:?} is not {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("no {what}: set {env}, give `{file_key}`, or run on a terminal to be asked")]
    NoSecret {
        what: &'static str,
        env: &'static str,
        file_key: &'static str,
    },
    #[error("cannot read {what} from {path}: {message}")]
    SecretFile {
        what: &'static str,
        path: String,
        message: String,
    },
}

/// Read a settings file (JSON, unknown keys refused).
pub fn load_file(path: &Path) -> Result<DialInFile, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| SettingsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Validate merged settings.
pub fn resolve(f: DialInFile) -> Result<Settings, SettingsError> {
    fn missing(name: &'static str, flag: &'static str, env: &'static str) -> SettingsError {
        SettingsError::Missing { name, flag, env }
    }
    fn addr(name: &'static str, v: &str) -> Result<SocketAddr, SettingsError> {
        v.parse().map_err(|_| SettingsError::Invalid {
            name,
            value: v.to_string(),
            expected: "an IP:PORT address",
        })
    }
    fn uri_addr(name: &'static str, v: &str) -> Result<SocketAddr, SettingsError> {
        crate::sip::call::uri_socket_addr(v).ok_or_else(|| SettingsError::Invalid {
            name,
            value: v.to_string(),
            expected: "a sip: URI with an IP address",
        })
    }
    let user = f.user.clone().ok_or(missing("user", "user", "USER"))?;
    let gate = f.gate.clone().ok_or(missing("gate", "gate", "GATE"))?;
    if !gate.starts_with("sip:") && !gate.starts_with("sips:") {
        return Err(SettingsError::Invalid {
            name: "gate",
            value: gate,
            expected: "a sip: URI",
        });
    }
    let admin_id = f
        .admin_id
        .clone()
        .ok_or(missing("admin_id", "admin-id", "ADMIN_ID"))?;
    let pbx = match &f.registrar {
        Some(r) => {
            let reg_addr = uri_addr("registrar", r)?;
            let destination = match &f.outbound_proxy {
                Some(p) => uri_addr("outbound_proxy", p)?,
                None => reg_addr,
            };
            let host = r
                .trim_start_matches("sips:")
                .trim_start_matches("sip:")
                .split([';', '>'])
                .next()
                .unwrap_or_default()
                .to_string();
            let host = host.rsplit('@').next().unwrap_or_default().to_string();
            Some(Pbx {
                registrar_uri: r.clone(),
                destination,
                aor: f
                    .aor
                    .clone()
                    .unwrap_or_else(|| format!("sip:{user}@{host}")),
                auth_user: f.auth_user.clone().unwrap_or_else(|| user.clone()),
                password_file: f.pbx_password_file.clone(),
                expires_s: f.expires_s.unwrap_or(DEFAULT_EXPIRES_S),
            })
        }
        None => None,
    };
    let listen = match (&f.listen, &pbx) {
        (Some(l), _) => addr("listen", l)?,
        (None, Some(_)) => SocketAddr::from(([127, 0, 0, 1], 0)),
        (None, None) => return Err(missing("listen", "listen", "LISTEN")),
    };
    // Our Contact, Via and SDP carry this address: a wildcard would tell the gate nothing.
    if listen.ip().is_unspecified() {
        return Err(SettingsError::Invalid {
            name: "listen",
            value: listen.to_string(),
            expected: "a specific IP address (it goes into the Contact and the SDP)",
        });
    }
    let digit = f.digit.ok_or(missing("digit", "digit", "DIGIT"))?;
    if digit > 9 {
        return Err(SettingsError::Invalid {
            name: "digit",
            value: digit.to_string(),
            expected: "a digit 0-9",
        });
    }
    let fill = |pattern: &str| pattern.replace("{digit}", &digit.to_string());
    let via = match f.via.as_deref().unwrap_or("message") {
        "message" => Via::Message {
            text: fill(f.signal_text.as_deref().unwrap_or("MAINTAIN-{digit}")),
        },
        "dtmf" => {
            let keys = fill(f.signal_dtmf.as_deref().unwrap_or("*62468246*{digit}#"));
            if !keys.chars().all(|c| "0123456789*#ABCD".contains(c)) || keys.is_empty() {
                return Err(SettingsError::Invalid {
                    name: "signal_dtmf",
                    value: keys,
                    expected: "DTMF keys (0-9 * # A-D)",
                });
            }
            Via::Call {
                keys_after_pin: keys,
                mode: if f.inband.unwrap_or(false) {
                    KeyMode::InBand
                } else {
                    KeyMode::Rfc4733
                },
            }
        }
        other => {
            return Err(SettingsError::Invalid {
                name: "via",
                value: other.to_string(),
                expected: "`message` or `dtmf`",
            })
        }
    };
    if matches!(via, Via::Call { .. }) && !admin_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(SettingsError::Invalid {
            name: "admin_id",
            value: admin_id,
            expected: "digits (it is keyed as DTMF)",
        });
    }
    let filter_from = f.callback_from.clone().ok_or(missing(
        "callback_from",
        "callback-from",
        "CALLBACK_FROM",
    ))?;
    // Without an explicit source the callback must come from the PBX's address, or directly
    // from the gate's host: a From header alone is anyone's to write, and a fake "gate" that
    // we answered could prompt for the console login and PIN.
    let filter_source = match &f.callback_source {
        None => Some(match &pbx {
            Some(p) => SocketAddr::new(p.destination.ip(), 0),
            None => SocketAddr::new(uri_addr("gate", &gate)?.ip(), 0),
        }),
        Some(s) => Some(match s.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 0),
            Err(_) => addr("callback_source", s)?,
        }),
    };
    let (modem, max_rate) = parse_modulation(f.modulation.as_deref().unwrap_or("v22bis"))?;
    Ok(Settings {
        listen,
        pbx,
        user,
        gate,
        admin_id,
        via,
        password_file: f.password_file.clone(),
        pin_file: f.pin_file.clone(),
        filter_from,
        filter_source,
        modem,
        max_rate,
        wait: Duration::from_secs(f.wait_s.unwrap_or(DEFAULT_WAIT_S)),
        connect: Duration::from_secs(f.connect_s.unwrap_or(DEFAULT_CONNECT_S)),
        ladder: f.ladder.unwrap_or(false),
    })
}

/// `v22bis` (2400), `v22` (1200), `v21`, `bell103`.
pub fn parse_modulation(name: &str) -> Result<(LineModem, Rate), SettingsError> {
    match name {
        "v22bis" => Ok((LineModem::V22bis, Rate::R2400)),
        "v22" => Ok((LineModem::V22bis, Rate::R1200)),
        "v21" => Ok((LineModem::V21, Rate::R1200)),
        "bell103" => Ok((LineModem::Bell103, Rate::R1200)),
        other => Err(SettingsError::Invalid {
            name: "modulation",
            value: other.to_string(),
            expected: "v22bis, v22, v21 or bell103",
        }),
    }
}

/// The secrets one run needs.
pub struct Secrets {
    pub pbx_password: Option<Secret>,
    pub gate_password: Option<Secret>,
    pub pin: Option<Secret>,
}

/// Gather the secrets `s` needs: from the file it names, else the environment, else a prompt
/// on the terminal (no echo).
pub fn read_secrets(s: &Settings) -> Result<Secrets, SettingsError> {
    let pbx_password = match &s.pbx {
        Some(p) => Some(read_secret(
            "PBX password",
            p.password_file.as_deref(),
            ENV_PBX_PASSWORD,
            "pbx_password_file",
        )?),
        None => None,
    };
    let (gate_password, pin) = match s.via {
        Via::Message { .. } => (
            Some(read_secret(
                "SIP password for the gate",
                s.password_file.as_deref(),
                ENV_PASSWORD,
                "password_file",
            )?),
            None,
        ),
        Via::Call { .. } => (
            None,
            Some(read_secret(
                "PIN",
                s.pin_file.as_deref(),
                ENV_PIN,
                "pin_file",
            )?),
        ),
    };
    Ok(Secrets {
        pbx_password,
        gate_password,
        pin,
    })
}

/// One secret: the first line of `file`, else `env`, else a prompt on the terminal.
pub fn read_secret(
    what: &'static str,
    file: Option<&Path>,
    env: &'static str,
    file_key: &'static str,
) -> Result<Secret, SettingsError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::SecretFile {
            what,
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        return Ok(Secret::new(line));
    }
    if let Ok(v) = std::env::var(env) {
        return Ok(Secret::new(v));
    }
    // rpassword asks on /dev/tty, so a script piping the session's input from a terminal can
    // still be asked.
    if std::io::stdin().is_terminal() || std::io::stderr().is_terminal() {
        if let Ok(v) = rpassword::prompt_password(format!("{what}: ")) {
            return Ok(Secret::new(v.trim_end_matches(['\r', '\n'])));
        }
    }
    Err(SettingsError::NoSecret {
        what,
        env,
        file_key,
    })
}

/// Why a run failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum DialInError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("interrupted before the session")]
    Interrupted,
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub rate_bps: u32,
    pub modulation: &'static str,
    pub session: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub ended: &'static str,
}

/// When this run started: every progress line carries the time since.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn say(line: &str) {
    let t = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("dial-in: [{t:6.2} s] {line}");
}

fn describe(p: &Progress, ladder: bool) -> Option<String> {
    Some(match p {
        Progress::Sip {
            outgoing,
            peer,
            start_line,
            cseq,
        } => {
            if !ladder {
                return None;
            }
            let arrow = if *outgoing { "──▶" } else { "◀──" };
            format!("  {arrow} {peer}  {start_line}  ({cseq})")
        }
        Progress::Registered { aor, expires_s } => {
            format!("registered {aor} (expires {expires_s} s)")
        }
        Progress::SignalSent { how, to } => format!("start signal sent by {how} to {to}"),
        Progress::ChallengeAnswered { status, realm } => {
            format!("challenge {status} answered (realm {realm:?})")
        }
        Progress::SignalAnswered { status } => format!("the signal was answered {status}"),
        Progress::GateAnswered => "the gate answered; keying ID #, PIN #, signal".into(),
        Progress::KeysSent { count, how } => format!("{count} keys sent ({how})"),
        Progress::GateCallEnded { by_gate } => {
            if *by_gate {
                "the gate hung up".into()
            } else {
                "hung up the call to the gate".into()
            }
        }
        Progress::CallbackRinging { from, source } => {
            format!("callback ringing from {from} (via {source})")
        }
        Progress::CallbackRejected {
            from,
            source,
            status,
        } => {
            format!("refused a call from {from} (via {source}) with {status}: not the gate's trunk")
        }
        Progress::CallbackAnswered {
            rtp_port,
            remote,
            codec,
        } => format!("callback answered; RTP :{rtp_port} ↔ {remote} ({codec})"),
    })
}

/// Run one dial-in: register, signal, take the callback, train, and bridge stdin/stdout.
pub async fn run(s: Settings, secrets: Secrets) -> Result<Summary, DialInError> {
    STARTED.get_or_init(Instant::now);
    let ladder = s.ladder;
    let report: admin::Report = Arc::new(move |p| {
        if let Some(l) = describe(&p, ladder) {
            say(&l);
        }
    });
    let registration = match (&s.pbx, &secrets.pbx_password) {
        (Some(p), Some(pw)) => Some(UaRegistration {
            registrar_uri: p.registrar_uri.clone(),
            destination: p.destination,
            aor: p.aor.clone(),
            auth_username: p.auth_user.clone(),
            password: pw.clone(),
            expires_s: p.expires_s,
        }),
        _ => None,
    };
    let mut ua = AdminUa::bind(
        UaConfig {
            bind: s.listen,
            registration,
            contact_user: s.user.clone(),
            user_agent: format!("dialback-dial-in/{}", env!("CARGO_PKG_VERSION")),
        },
        report,
    )
    .await?;
    let me = ua.local_addr();
    say(&format!("SIP on {me}"));
    ua.register(REGISTER_WITHIN).await?;
    let creds = SignalCredentials {
        admin_id: s.admin_id.clone(),
        gate_password: secrets.gate_password.clone(),
        pbx: s
            .pbx
            .as_ref()
            .zip(secrets.pbx_password.clone())
            .map(|(p, pw)| (p.auth_user.clone(), pw)),
    };
    let from = match &s.pbx {
        Some(p) => p.aor.clone(),
        None => format!("sip:{}@{me}", s.user),
    };
    let wait_s = s.wait.as_secs();
    let signal_and_wait = async {
        match &s.via {
            Via::Message { text } => {
                match ua.send_message(&s.gate, &from, text.as_bytes(), &creds).await {
                    Ok(_) => {}
                    // The gate's uniform answer to bad credentials: no oracle beyond this.
                    Err(AdminError::MessageRefused { status: 403 }) => {
                        return Err(AdminError::NoCallback {
                            wait_s,
                            hint: " (the gate answered 403: wrong ID, password or digit, or locked out)".into(),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
            Via::Call {
                keys_after_pin,
                mode,
            } => {
                let pin = secrets.pin.as_ref().map(|p| p.expose()).unwrap_or("");
                let keys = format!("{}#{pin}#{keys_after_pin}", s.admin_id);
                ua.call_with_keys(
                    &s.gate,
                    &from,
                    &keys,
                    *mode,
                    &creds,
                    Duration::from_secs(30),
                )
                .await?;
            }
        }
        say(&format!("waiting up to {wait_s} s for the callback"));
        let filter = CallbackFilter {
            from: Some(s.filter_from.clone()),
            source: s.filter_source,
        };
        ua.wait_callback(&filter, s.wait, &[Codec::Pcmu, Codec::Pcma])
            .await
    };
    let outcome = tokio::select! {
        r = signal_and_wait => r.map_err(DialInError::from),
        _ = crate::runtime::wait_for_signal() => Err(DialInError::Interrupted),
    };
    let cb = match outcome {
        Ok(cb) => cb,
        Err(e) => {
            ua.unregister(Duration::from_secs(2)).await;
            return Err(e);
        }
    };
    let answered_at = Instant::now();
    let mut line = admin::start_modem(&cb, s.modem, s.max_rate)?;
    let mut active = ua.keep_call(cb.call);
    say("answer tone (2100 Hz, V.25)");
    let training_note = tokio::time::sleep(ANSWER_TONE);
    tokio::pin!(training_note);
    let connected = tokio::select! {
        r = admin::wait_connect(&mut line, s.connect) => r,
        _ = &mut training_note => {
            say(&format!("training ({})", admin::modulation_name(s.modem, if s.max_rate == Rate::R2400 { 2400 } else { 1200 })));
            admin::wait_connect(&mut line, s.connect.saturating_sub(ANSWER_TONE)).await
        }
    };
    let rate = match connected {
        Ok(r) => r,
        Err(e) => {
            if let Some(mut ua) = active.finish(Duration::from_secs(3)).await {
                ua.unregister(Duration::from_secs(2)).await;
            }
            return Err(e.into());
        }
    };
    let name = admin::modulation_name(s.modem, rate);
    say(&format!(
        "CONNECT {rate} {name} ({:.1} s after answer)",
        answered_at.elapsed().as_secs_f64()
    ));
    let session_start = Instant::now();
    if std::io::stdin().is_terminal() {
        // Said before raw mode: once OPOST is off a bare `\n` no longer returns the carriage.
        say("terminal in raw mode; Ctrl-] hangs up");
    }
    let raw = RawMode::enter();
    let pipe_mode = raw.is_none();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut inbuf = vec![0u8; 256];
    let mut stdin_open = true;
    // Pipes: hold input until the console has said something (its banner), then pace it a
    // line at a time (see [`LinePacer`]), so a script runs like a typist at any line rate.
    let mut heard = !pipe_mode;
    let mut pacer = LinePacer::new(pace_for(rate), Instant::now());
    let mut quiet_since = Instant::now();
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let ended: &'static str = loop {
        let eof_deadline = tokio::time::Instant::from_std(quiet_since + EOF_QUIET);
        let pace_deadline = tokio::time::Instant::from_std(pacer.ready_at());
        let drained = pacer.is_empty() && line.tx.capacity() == line.tx.max_capacity();
        tokio::select! {
            ev = line.events.recv() => match ev {
                Some(LineEvent::Data(d)) => {
                    heard = true;
                    let now = Instant::now();
                    quiet_since = now;
                    pacer.heard(now);
                    bytes_in += d.len() as u64;
                    let out: Vec<u8> = if pipe_mode { d.into_iter().filter(|b| *b != b'\r').collect() } else { d };
                    if stdout.write_all(&out).await.is_err() || stdout.flush().await.is_err() {
                        break "stdout closed";
                    }
                }
                Some(LineEvent::Connected { .. }) => {}
                Some(LineEvent::CarrierLost) => break "carrier lost",
                Some(_) => break "no RTP from the gate",
                None => break "modem stopped",
            },
            by_gate = active.ended() => {
                break if by_gate { "the gate hung up" } else { "call ended" };
            }
            r = stdin.read(&mut inbuf), if stdin_open && pacer.has_room() => match r {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    pacer.end_of_input();
                }
                Ok(n) => {
                    let chunk = inbuf.get(..n).unwrap_or(&[]);
                    if pipe_mode {
                        pacer.push(chunk);
                    } else {
                        if chunk.contains(&ESCAPE) {
                            break "hung up (Ctrl-])";
                        }
                        bytes_out += n as u64;
                        if line.tx.send(chunk.to_vec()).await.is_err() {
                            break "modem closed";
                        }
                    }
                }
            },
            _ = tokio::time::sleep_until(pace_deadline), if heard && pacer.has_line() => {
                let now = Instant::now();
                if let Some(l) = pacer.take_line(now) {
                    bytes_out += l.len() as u64;
                    if line.tx.send(l).await.is_err() {
                        break "modem closed";
                    }
                }
            }
            _ = tokio::time::sleep_until(eof_deadline), if !stdin_open && drained => {
                break "input ended";
            }
            _ = crate::runtime::wait_for_signal() => break "interrupted",
        }
    };
    if raw.is_some() {
        // The console's last line (a prompt) has no line end.
        drop(raw);
        eprintln!();
    }
    let session = session_start.elapsed();
    drop(line);
    if let Some(mut ua) = active.finish(Duration::from_secs(3)).await {
        ua.unregister(Duration::from_secs(2)).await;
    }
    let summary = Summary {
        rate_bps: rate,
        modulation: name,
        session,
        bytes_in,
        bytes_out,
        ended,
    };
    say(&format!(
        "session over: {ended}; {:.1} s at {rate} bit/s {name}; {bytes_in} bytes received, {bytes_out} sent",
        session.as_secs_f64()
    ));
    Ok(summary)
}

/// Quiet time before a script's next line: long enough for the console's answer to start
/// (its echo, or the PIN check) at the line's speed.
fn pace_for(rate_bps: u32) -> Duration {
    if rate_bps >= 1200 {
        Duration::from_millis(600)
    } else {
        Duration::from_millis(1500)
    }
}

/// Most script bytes held back (stdin is not read further until they go out).
const PACER_CAP: usize = 4096;

/// Paces piped input a line at a time: the next line goes out once the line has been quiet
/// for `pace` since the later of our last line and the last byte heard, so a script behaves
/// like a typist whatever the modem's rate. Sans-IO: `now` is passed in.
#[derive(Debug)]
struct LinePacer {
    pending: Vec<u8>,
    pace: Duration,
    last: Instant,
    eof: bool,
}

impl LinePacer {
    fn new(pace: Duration, now: Instant) -> Self {
        LinePacer {
            pending: Vec::new(),
            pace,
            last: now,
            eof: false,
        }
    }
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }
    fn end_of_input(&mut self) {
        self.eof = true;
    }
    fn heard(&mut self, now: Instant) {
        self.last = self.last.max(now);
    }
    fn has_room(&self) -> bool {
        self.pending.len() < PACER_CAP
    }
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
    /// A whole line is waiting (or the unterminated rest after end of input).
    fn has_line(&self) -> bool {
        self.pending.contains(&b'\n') || (self.eof && !self.pending.is_empty())
    }
    fn ready_at(&self) -> Instant {
        self.last + self.pace
    }
    /// The next line (with its newline) if it is due at `now`.
    fn take_line(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.ready_at() || !self.has_line() {
            return None;
        }
        let end = self
            .pending
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.pending.len(), |i| i + 1);
        self.last = now;
        Some(self.pending.drain(..end).collect())
    }
}

/// The terminal in raw mode while it lives (restored on drop). `None` when stdin is not a TTY.
struct RawMode {
    #[cfg(unix)]
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        #[cfg(unix)]
        {
            use rustix::termios::{tcgetattr, tcsetattr, OptionalActions};
            let stdin = std::io::stdin();
            let saved = tcgetattr(&stdin).ok()?;
            let mut raw = saved.clone();
            raw.make_raw();
            tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
            Some(RawMode { saved })
        }
        #[cfg(not(unix))]
        None
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use rustix::termios::{tcsetattr, OptionalActions};
            let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> DialInFile {
        DialInFile {
            user: Some("1001".into()),
            gate: Some("sip:gate-admin@127.0.0.1:5060".into()),
            admin_id: Some("1001".into()),
            digit: Some(1),
            callback_from: Some("gate-out".into()),
            registrar: Some("sip:127.0.0.1:5060".into()),
            ..DialInFile::default()
        }
    }

    #[test]
    fn flags_override_the_file_field_by_field() {
        let file = DialInFile {
            wait_s: Some(90),
            modulation: Some("v21".into()),
            ..base()
        };
        let flags = DialInFile {
            modulation: Some("v22".into()),
            ..DialInFile::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.modulation.as_deref(), Some("v22"));
        assert_eq!(merged.wait_s, Some(90));
        assert_eq!(merged.user.as_deref(), Some("1001"));
    }

    #[test]
    fn pbx_defaults_fill_aor_auth_user_and_an_ephemeral_port() {
        let s = resolve(base()).unwrap();
        let pbx = s.pbx.unwrap();
        assert_eq!(pbx.aor, "sip:1001@127.0.0.1:5060");
        assert_eq!(pbx.auth_user, "1001");
        assert_eq!(pbx.destination, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(s.listen.port(), 0);
        assert_eq!(
            s.via,
            Via::Message {
                text: "MAINTAIN-1".into()
            }
        );
        assert_eq!(s.wait, Duration::from_secs(DEFAULT_WAIT_S));
        assert_eq!(
            s.filter_source,
            Some("127.0.0.1:0".parse().unwrap()),
            "the callback must come through the PBX by default"
        );
    }

    #[test]
    fn dtmf_signal_is_filled_with_the_digit_and_inband_is_a_mode() {
        let s = resolve(DialInFile {
            via: Some("dtmf".into()),
            inband: Some(true),
            digit: Some(2),
            ..base()
        })
        .unwrap();
        assert_eq!(
            s.via,
            Via::Call {
                keys_after_pin: "*62468246*2#".into(),
                mode: KeyMode::InBand
            }
        );
    }

    #[test]
    fn settings_errors_name_what_is_missing_or_wrong() {
        let no_gate = DialInFile {
            gate: None,
            ..base()
        };
        assert!(matches!(
            resolve(no_gate),
            Err(SettingsError::Missing { name: "gate", .. })
        ));
        let direct_without_listen = DialInFile {
            registrar: None,
            ..base()
        };
        assert!(matches!(
            resolve(direct_without_listen),
            Err(SettingsError::Missing { name: "listen", .. })
        ));
        let bad_modulation = DialInFile {
            modulation: Some("v34".into()),
            ..base()
        };
        assert!(matches!(
            resolve(bad_modulation),
            Err(SettingsError::Invalid {
                name: "modulation",
                ..
            })
        ));
        let no_filter = DialInFile {
            callback_from: None,
            ..base()
        };
        assert!(resolve(no_filter).is_err());
        let letters_as_dtmf_id = DialInFile {
            via: Some("dtmf".into()),
            admin_id: Some("alice".into()),
            ..base()
        };
        assert!(resolve(letters_as_dtmf_id).is_err());
        let wildcard = DialInFile {
            listen: Some("0.0.0.0:5062".into()),
            ..base()
        };
        assert!(matches!(
            resolve(wildcard),
            Err(SettingsError::Invalid { name: "listen", .. })
        ));
        let registrar_by_name = DialInFile {
            registrar: Some("sip:pbx.example".into()),
            ..base()
        };
        assert!(resolve(registrar_by_name).is_err());
    }

    #[test]
    fn settings_file_refuses_unknown_keys_and_passwords() {
        let dir = std::env::temp_dir().join(format!("dialin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.json");
        std::fs::write(&p, r#"{"user":"1001","password":"hunter2"}"#).unwrap();
        let err = load_file(&p).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let ok = dir.join("ok.json");
        std::fs::write(&ok, r#"{"user":"1001","wait_s":5}"#).unwrap();
        assert_eq!(load_file(&ok).unwrap().wait_s, Some(5));
    }

    #[test]
    fn piped_lines_go_out_one_at_a_time_after_the_line_is_quiet() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut p = LinePacer::new(Duration::from_millis(600), t0);
        p.push(b"1001\n2468\nsta");
        assert_eq!(p.take_line(ms(100)), None, "not quiet long enough");
        assert_eq!(p.take_line(ms(600)).as_deref(), Some(&b"1001\n"[..]));
        p.heard(ms(700));
        assert_eq!(
            p.take_line(ms(1200)),
            None,
            "the echo restarted the quiet time"
        );
        assert_eq!(p.take_line(ms(1300)).as_deref(), Some(&b"2468\n"[..]));
        assert!(!p.has_line(), "a partial line waits for its newline");
        p.end_of_input();
        assert_eq!(p.take_line(ms(1900)).as_deref(), Some(&b"sta"[..]));
        assert!(p.is_empty());
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("dialin-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "s3cret\nignored\n").unwrap();
        let s = read_secret("PIN", Some(&p), "DIALBACK_DIALIN_TEST_UNSET", "pin_file").unwrap();
        assert_eq!(s.expose(), "s3cret");
    }
}
