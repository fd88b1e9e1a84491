//! Registration of a trunk's AOR at its registrar (RFC 3261 §10.2), sans-IO.
//!
//! The state machine asks for REGISTER requests through [`Registration::poll_request`] and is
//! told their outcome. It answers digest challenges (401 and 407, MD5 and SHA-256, `qop=auth`
//! also when `auth-int` is offered; RFC 7616, RFC 8760) with our own digest code, counts
//! nonce uses in hex, re-answers a `stale=true` challenge with the new nonce, honours
//! `423 Interval Too Brief` through Min-Expires (§10.2.8), refreshes before expiry and backs
//! off exponentially with jitter (bounded) after a failure or timeout. `unregister` sends
//! `Expires: 0` for a clean shutdown.

use std::time::{Duration, Instant};

use crate::sip::digest::{self, Challenge, ClientCredentials, ResponseParams};
use crate::sip::message::Message;

/// Upper bound of the retry backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// First retry delay after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Challenges answered in a row without success before we call the credentials wrong.
const MAX_CHALLENGES: u32 = 3;

/// What a registration needs to know.
#[derive(Clone, Debug)]
pub struct RegistrationConfig {
    /// Request-URI of the REGISTER (the registrar's domain, e.g. `sip:pbx.example`).
    pub registrar_uri: String,
    /// Address of record, used in From and To.
    pub aor: String,
    /// Our Contact URI.
    pub contact: String,
    pub auth_username: String,
    pub password: String,
    /// Requested expiry.
    pub expires_s: u32,
}

/// Where the registration stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegState {
    /// A REGISTER is in flight.
    Registering,
    /// Bound until `until`; refresh is scheduled.
    Registered { until: Instant },
    /// Waiting to retry at `retry_at`.
    Backoff { retry_at: Instant },
    /// Un-REGISTER in flight.
    Unregistering,
    /// Done (after un-REGISTER).
    Unregistered,
}

/// A REGISTER the trunk must send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    pub cseq: u32,
    pub expires_s: u32,
    /// `(header name, value)`: `Authorization` or `Proxy-Authorization`.
    pub authorization: Option<(&'static str, String)>,
}

/// State changes worth logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegEvent {
    Registered {
        expires_s: u32,
    },
    /// The registrar refused or did not answer; a retry follows after `retry_in`.
    Failed {
        reason: String,
        retry_in: Duration,
    },
    Unregistered,
}

/// Registration state machine for one AOR.
#[derive(Debug)]
pub struct Registration {
    cfg: RegistrationConfig,
    state: RegState,
    expires_s: u32,
    cseq: u32,
    pending: Option<RegisterRequest>,
    challenge: Option<(Challenge, &'static str)>,
    nc: u32,
    challenges_in_row: u32,
    failures: u32,
    jitter: u64,
    events: Vec<RegEvent>,
    shutting_down: bool,
}

impl Registration {
    /// Start registering at `now`. `jitter_seed` feeds backoff jitter and cnonces.
    pub fn new(cfg: RegistrationConfig, jitter_seed: u64) -> Self {
        let expires_s = cfg.expires_s;
        let mut r = Registration {
            cfg,
            state: RegState::Registering,
            expires_s,
            cseq: 0,
            pending: None,
            challenge: None,
            nc: 0,
            challenges_in_row: 0,
            failures: 0,
            jitter: jitter_seed | 1,
            events: Vec::new(),
            shutting_down: false,
        };
        r.queue_register(false);
        r
    }

    /// Current state.
    pub fn state(&self) -> RegState {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &RegistrationConfig {
        &self.cfg
    }

    /// The REGISTER to send, if one is due.
    pub fn poll_request(&mut self) -> Option<RegisterRequest> {
        self.pending.take()
    }

    /// Next state change to report.
    pub fn poll_event(&mut self) -> Option<RegEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// When [`Registration::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            RegState::Registered { until } => Some(until),
            RegState::Backoff { retry_at } => Some(retry_at),
            _ => None,
        }
    }

    /// Refresh or retry when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            RegState::Registered { until } | RegState::Backoff { retry_at: until }
                if until <= now =>
            {
                self.state = RegState::Registering;
                self.challenges_in_row = 0;
                self.queue_register(false);
            }
            _ => {}
        }
    }

    /// The final response to our last REGISTER.
    pub fn handle_response(&mut self, now: Instant, msg: &Message) {
        let Some(code) = msg.status() else { return };
        if code < 200 {
            return;
        }
        let unregistering = self.state == RegState::Unregistering;
        match code {
            200..=299 => {
                self.challenges_in_row = 0;
                self.failures = 0;
                if unregistering {
                    self.state = RegState::Unregistered;
                    self.events.push(RegEvent::Unregistered);
                    return;
                }
                let granted = self.granted_expiry(msg).max(1);
                self.state = RegState::Registered {
                    until: now + refresh_after(granted),
                };
                self.events
                    .push(RegEvent::Registered { expires_s: granted });
            }
            401 | 407 => {
                let header = if code == 401 {
                    "www-authenticate"
                } else {
                    "proxy-authenticate"
                };
                let offers: Vec<&str> = msg.headers(header).collect();
                let answer_name = if code == 401 {
                    "Authorization"
                } else {
                    "Proxy-Authorization"
                };
                match digest::select_challenge(&offers) {
                    Some(ch)
                        if self.challenges_in_row < MAX_CHALLENGES
                            && (ch.stale || !self.already_answered(&ch)) =>
                    {
                        self.challenges_in_row += 1;
                        self.nc = 0;
                        self.challenge = Some((ch, answer_name));
                        self.queue_register(unregistering);
                    }
                    Some(_) => self.fail(now, "credentials refused".to_string()),
                    None => self.fail(now, "no usable digest challenge".to_string()),
                }
            }
            423 => {
                // RFC 3261 §10.2.8: retry with at least Min-Expires.
                let min = msg
                    .header("min-expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.expires_s && m <= 86_400 => {
                        self.expires_s = m;
                        self.queue_register(unregistering);
                    }
                    _ => self.fail(now, "423 without a usable Min-Expires".to_string()),
                }
            }
            _ => {
                if unregistering {
                    self.state = RegState::Unregistered;
                    self.events.push(RegEvent::Unregistered);
                    return;
                }
                self.fail(now, format!("registrar answered {code}"));
            }
        }
    }

    /// Our REGISTER transaction timed out (Timer F) or could not be sent.
    pub fn handle_transaction_timeout(&mut self, now: Instant) {
        if self.state == RegState::Unregistering {
            self.state = RegState::Unregistered;
            self.events.push(RegEvent::Unregistered);
            return;
        }
        self.fail(now, "no answer from registrar".to_string());
    }

    /// Remove the binding (clean shutdown): `Expires: 0`.
    pub fn unregister(&mut self) {
        self.shutting_down = true;
        match self.state {
            RegState::Registered { .. } | RegState::Registering => {
                self.state = RegState::Unregistering;
                self.challenges_in_row = 0;
                self.queue_register(true);
            }
            _ => {
                self.state = RegState::Unregistered;
            }
        }
    }

    fn already_answered(&self, ch: &Challenge) -> bool {
        self.challenge
            .as_ref()
            .is_some_and(|(old, _)| old.nonce == ch.nonce && self.nc > 0)
    }

    fn fail(&mut self, now: Instant, reason: String) {
        self.failures = self.failures.saturating_add(1);
        let retry_in = self.backoff();
        self.challenge = None;
        self.state = RegState::Backoff {
            retry_at: now + retry_in,
        };
        self.events.push(RegEvent::Failed { reason, retry_in });
    }

    /// Exponential backoff with ±20 % jitter, bounded by [`MAX_BACKOFF`].
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(10);
        let base = (FIRST_BACKOFF * 2u32.saturating_pow(exp)).min(MAX_BACKOFF);
        // xorshift64: cheap deterministic jitter from the injected seed.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let frac = (self.jitter % 401) as f64 / 1000.0 - 0.2;
        let d = base.as_secs_f64() * (1.0 + frac);
        Duration::from_secs_f64(d.min(MAX_BACKOFF.as_secs_f64()))
    }

    fn queue_register(&mut self, unregister: bool) {
        self.cseq = self.cseq.wrapping_add(1) & 0x7fff_ffff;
        let expires_s = if unregister { 0 } else { self.expires_s };
        let authorization = self
            .challenge
            .as_ref()
            .map(|(ch, name)| (ch.clone(), *name));
        let authorization = authorization.map(|(ch, name)| {
            self.nc += 1;
            self.jitter = self.jitter.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
            let cnonce = format!("{:016x}", self.jitter);
            let value = digest::authorization(
                &ch,
                &ClientCredentials {
                    username: &self.cfg.auth_username,
                    password: &self.cfg.password,
                },
                &ResponseParams {
                    method: "REGISTER",
                    uri: &self.cfg.registrar_uri,
                    body: b"",
                    nc: self.nc,
                    cnonce: &cnonce,
                },
            );
            (name, value)
        });
        self.pending = Some(RegisterRequest {
            cseq: self.cseq,
            expires_s,
            authorization,
        });
    }

    /// Expiry the registrar granted: our Contact's `expires` parameter, else Expires, else what
    /// we asked for (RFC 3261 §10.2.4).
    fn granted_expiry(&self, msg: &Message) -> u32 {
        let ours = self.cfg.contact.as_str();
        for c in msg
            .headers("contact")
            .flat_map(crate::sip::validate::split_list)
        {
            if !c.contains(ours) {
                continue;
            }
            for p in c.split(';').skip(1) {
                if let Some((k, v)) = p.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("expires") {
                        if let Ok(n) = v.trim().parse::<u32>() {
                            return n;
                        }
                    }
                }
            }
        }
        msg.header("expires")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(self.expires_s)
    }
}

/// Refresh well before expiry: at 80 % of the interval, and at least 5 s early when possible.
fn refresh_after(granted_s: u32) -> Duration {
    let g = f64::from(granted_s);
    let early = (g - 5.0).max(g * 0.5);
    Duration::from_secs_f64((g * 0.8).min(early))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, Limits};

    fn cfg() -> RegistrationConfig {
        RegistrationConfig {
            registrar_uri: "sip:127.0.0.1".into(),
            aor: "sip:gate@127.0.0.1".into(),
            contact: "sip:gate@127.0.0.1:5070".into(),
            auth_username: "gate".into(),
            password: "pw".into(),
            expires_s: 60,
        }
    }

    fn resp(code: u16, extra: &str) -> Message {
        let s = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nFrom: <sip:gate@127.0.0.1>;tag=1\r\nTo: <sip:gate@127.0.0.1>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse_datagram(s.as_bytes(), &Limits::default()).expect("frames")
    }

    #[test]
    fn challenge_is_answered_and_refresh_is_scheduled_before_expiry() {
        let now = Instant::now();
        let mut r = Registration::new(cfg(), 1);
        assert!(r.poll_request().expect("first").authorization.is_none());
        r.handle_response(
            now,
            &resp(401, "WWW-Authenticate: Digest realm=\"127.0.0.1\", nonce=\"n1\", qop=\"auth,auth-int\"\r\n"),
        );
        let second = r.poll_request().expect("answer");
        let (name, value) = second.authorization.expect("auth");
        assert_eq!(name, "Authorization");
        assert!(
            value.contains("qop=auth,")
                || value.contains("qop=auth\"")
                || value.contains("qop=auth ")
        );
        assert!(value.contains("nc=00000001"));
        r.handle_response(
            now,
            &resp(200, "Contact: <sip:gate@127.0.0.1:5070>;expires=10\r\n"),
        );
        assert_eq!(r.poll_event(), Some(RegEvent::Registered { expires_s: 10 }));
        let due = r.poll_timeout().expect("refresh");
        assert!(due > now && due <= now + Duration::from_secs(8));
        r.handle_timeout(due);
        let refresh = r.poll_request().expect("refresh");
        assert!(refresh
            .authorization
            .expect("preemptive")
            .1
            .contains("nc=00000002"));
    }

    #[test]
    fn same_nonce_twice_means_wrong_credentials_but_stale_is_retried() {
        let now = Instant::now();
        let mut r = Registration::new(cfg(), 1);
        r.poll_request();
        let ch = "WWW-Authenticate: Digest realm=\"r\", nonce=\"n1\"\r\n";
        r.handle_response(now, &resp(401, ch));
        assert!(r.poll_request().is_some());
        r.handle_response(
            now,
            &resp(
                401,
                "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\", stale=true\r\n",
            ),
        );
        assert!(r.poll_request().is_some(), "stale nonce is re-answered");
        r.handle_response(
            now,
            &resp(
                401,
                "WWW-Authenticate: Digest realm=\"r\", nonce=\"n2\"\r\n",
            ),
        );
        assert!(r.poll_request().is_none());
        assert!(matches!(r.poll_event(), Some(RegEvent::Failed { .. })));
        assert!(matches!(r.state(), RegState::Backoff { .. }));
    }

    #[test]
    fn interval_too_brief_raises_expires_to_min_expires() {
        let now = Instant::now();
        let mut r = Registration::new(cfg(), 1);
        r.poll_request();
        r.handle_response(now, &resp(423, "Min-Expires: 120\r\n"));
        assert_eq!(r.poll_request().expect("retry").expires_s, 120);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stays_bounded() {
        let now = Instant::now();
        let mut r = Registration::new(cfg(), 42);
        let mut last = Duration::ZERO;
        for i in 0..12 {
            r.poll_request();
            r.handle_transaction_timeout(now);
            let Some(RegEvent::Failed { retry_in, .. }) = r.poll_event() else {
                panic!("failure event");
            };
            assert!(retry_in <= MAX_BACKOFF);
            if i < 4 {
                assert!(retry_in > last, "grows: {retry_in:?} after {last:?}");
            }
            last = retry_in;
            r.handle_timeout(now + retry_in);
        }
        assert!(last >= Duration::from_secs(47));
    }

    #[test]
    fn unregister_sends_expires_zero() {
        let now = Instant::now();
        let mut r = Registration::new(cfg(), 1);
        r.poll_request();
        r.handle_response(now, &resp(200, "Expires: 60\r\n"));
        r.unregister();
        assert_eq!(r.poll_request().expect("unregister").expires_s, 0);
        r.handle_response(now, &resp(200, ""));
        assert_eq!(r.state(), RegState::Unregistered);
    }
}
