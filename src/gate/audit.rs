//! Audit records: one JSON object per line, stable event codes, UTC RFC 3339 stamps
//! (DESIGN.md step 4: every decision is audited before anything is dialled; step 7: the end
//! of a session is audited).
//!
//! Owns the record type and its serialisation; the runtime appends the lines to the audit file
//! (and fsyncs per the dialplan). Every field is a closed enum, an address, a validated
//! [`AdminId`] or a time, so no field can hold a secret or attacker-chosen free text. The
//! RFC 3339 formatter (RFC 3339 §5.6, `date-time` with `Z`) is our own. Pure: the time is
//! passed in.

use std::net::SocketAddr;

use serde::Serialize;

use super::decide::{Decision, DenyReason, GateEvent};
use super::nonce::AuthFailure;
use super::policy::AdminId;
use super::WallTime;

/// Latest time RFC 3339's four-digit year can hold: 9999-12-31T23:59:59Z.
pub const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// Stable event codes; these strings are an interface for log consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventCode {
    AuthOk,
    AuthFail,
    SignalOk,
    SignalFail,
    Lock,
    Unlock,
    CallbackPlaced,
    CallbackRinging,
    CallbackAnswered,
    CallbackFailed,
    CallbackAborted,
    SessionStart,
    SessionEnd,
    OriginateRefused,
}

impl EventCode {
    pub const ALL: [EventCode; 14] = [
        EventCode::AuthOk,
        EventCode::AuthFail,
        EventCode::SignalOk,
        EventCode::SignalFail,
        EventCode::Lock,
        EventCode::Unlock,
        EventCode::CallbackPlaced,
        EventCode::CallbackRinging,
        EventCode::CallbackAnswered,
        EventCode::CallbackFailed,
        EventCode::CallbackAborted,
        EventCode::SessionStart,
        EventCode::SessionEnd,
        EventCode::OriginateRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventCode::AuthOk => "auth.ok",
            EventCode::AuthFail => "auth.fail",
            EventCode::SignalOk => "signal.ok",
            EventCode::SignalFail => "signal.fail",
            EventCode::Lock => "lock",
            EventCode::Unlock => "unlock",
            EventCode::CallbackPlaced => "callback.placed",
            EventCode::CallbackRinging => "callback.ringing",
            EventCode::CallbackAnswered => "callback.answered",
            EventCode::CallbackFailed => "callback.failed",
            EventCode::CallbackAborted => "callback.aborted",
            EventCode::SessionStart => "session.start",
            EventCode::SessionEnd => "session.end",
            EventCode::OriginateRefused => "originate.refused",
        }
    }
}

/// The trunk an event happened on (DESIGN.md "The three trunks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trunk {
    User,
    Admin,
    Originate,
}

/// SIP transport (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Why something happened, as a closed set of codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // decide::DenyReason
    AuditUnavailable,
    SourcePenalty,
    Locked,
    BadCredentials,
    UnknownSignal,
    DigitNotOwned,
    WindowExpired,
    CallbackActive,
    RateLimited,
    // nonce::AuthFailure
    Malformed,
    WrongRealm,
    WrongUri,
    NoQop,
    UnknownUser,
    AlgorithmNotOffered,
    NoCredentialForAlgorithm,
    BadResponse,
    Replayed,
    ReplayTableFull,
    // call flow, callback and session
    Timeout,
    TooManyFailures,
    ManualUnlock,
    LockExpired,
    NoAnswer,
    Busy,
    Declined,
    AllNumbersFailed,
    Diversion,
    Redirected,
    ModemTrainingFailed,
    ReauthFailed,
    CarrierLost,
    Hangup,
    IdleTimeout,
    DurationLimit,
    Shutdown,
    NotOurDialog,
    /// No RTP arrived for `media.rtp_timeout_s` (issue 3 point 2).
    RtpTimeout,
}

impl From<DenyReason> for Reason {
    fn from(r: DenyReason) -> Self {
        match r {
            DenyReason::AuditUnavailable => Reason::AuditUnavailable,
            DenyReason::SourcePenalty => Reason::SourcePenalty,
            DenyReason::Locked => Reason::Locked,
            DenyReason::BadCredentials => Reason::BadCredentials,
            DenyReason::UnknownSignal => Reason::UnknownSignal,
            DenyReason::DigitNotOwned => Reason::DigitNotOwned,
            DenyReason::WindowExpired => Reason::WindowExpired,
            DenyReason::CallbackActive => Reason::CallbackActive,
            DenyReason::RateLimited => Reason::RateLimited,
        }
    }
}

impl From<AuthFailure> for Reason {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Malformed => Reason::Malformed,
            AuthFailure::WrongRealm => Reason::WrongRealm,
            AuthFailure::WrongUri => Reason::WrongUri,
            AuthFailure::NoQop => Reason::NoQop,
            AuthFailure::UnknownUser => Reason::UnknownUser,
            AuthFailure::AlgorithmNotOffered => Reason::AlgorithmNotOffered,
            AuthFailure::NoCredentialForAlgorithm => Reason::NoCredentialForAlgorithm,
            AuthFailure::BadResponse => Reason::BadResponse,
            AuthFailure::Replayed => Reason::Replayed,
            AuthFailure::ReplayTableFull => Reason::ReplayTableFull,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub event: EventCode,
    pub time: WallTime,
    pub trunk: Trunk,
    pub transport: Transport,
    /// The transport source of the request (or the peer of the callback).
    pub source: Option<SocketAddr>,
    /// Only an administrator the policy knows and the request proved or claimed; never the
    /// raw keyed ID, which could be a mistyped PIN.
    pub admin: Option<AdminId>,
    pub reason: Option<Reason>,
}

/// Where and how a request arrived, shared by the records it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub trunk: Trunk,
    pub transport: Transport,
    pub source: Option<SocketAddr>,
}

impl AuditRecord {
    /// The record of a decision, written before anything is dialled: `signal.ok` for an
    /// allow, `auth.fail` for bad credentials, `signal.fail` for every other denial.
    /// `admin` is the administrator proved or claimed (see [`AuditRecord::admin`]).
    pub fn for_decision(
        decision: &Decision,
        time: WallTime,
        origin: Origin,
        admin: Option<AdminId>,
    ) -> Self {
        let (event, reason, admin) = match decision {
            Decision::Allow { admin, .. } => (EventCode::SignalOk, None, Some(admin.clone())),
            Decision::Deny(DenyReason::BadCredentials) => {
                (EventCode::AuthFail, Some(Reason::BadCredentials), admin)
            }
            Decision::Deny(r) => (EventCode::SignalFail, Some(Reason::from(*r)), admin),
        };
        AuditRecord {
            event,
            time,
            trunk: origin.trunk,
            transport: origin.transport,
            source: origin.source,
            admin,
            reason,
        }
    }

    /// The record of a lock or unlock reported by `GateState::poll_event`.
    pub fn for_gate_event(event: &GateEvent, time: WallTime, origin: Origin) -> Self {
        let (code, admin, reason) = match event {
            GateEvent::Locked { admin, .. } => (EventCode::Lock, admin, Reason::TooManyFailures),
            GateEvent::Unlocked { admin, manual } => (
                EventCode::Unlock,
                admin,
                if *manual {
                    Reason::ManualUnlock
                } else {
                    Reason::LockExpired
                },
            ),
        };
        AuditRecord {
            event: code,
            time,
            trunk: origin.trunk,
            transport: origin.transport,
            source: origin.source,
            admin: Some(admin.clone()),
            reason: Some(reason),
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    event: &'static str,
    trunk: Trunk,
    transport: Transport,
    source: Option<String>,
    admin: Option<&'a str>,
    reason: Option<Reason>,
}

impl AuditRecord {
    /// The record as one JSON object followed by `\n`. Keys: `ts`, `event`, `trunk`,
    /// `transport`, `source`, `admin`, `reason` (absent values are `null`).
    pub fn to_json_line(&self) -> String {
        let line = Line {
            ts: rfc3339(self.time),
            event: self.event.as_str(),
            trunk: self.trunk,
            transport: self.transport,
            source: self.source.map(|s| s.to_string()),
            admin: self.admin.as_ref().map(AdminId::as_str),
            reason: self.reason,
        };
        // Serialising this struct of strings, options and unit enums cannot fail; should it
        // ever, an audit line that says so is better than none.
        let mut s = serde_json::to_string(&line).unwrap_or_else(|_| {
            format!(
                "{{\"ts\":\"{}\",\"event\":\"{}\",\"error\":\"serialise\"}}",
                line.ts, line.event
            )
        });
        s.push('\n');
        s
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 §5.6) for seconds since the Unix epoch, clamped to
/// [`MAX_RFC3339_SECS`].
pub fn rfc3339(t: WallTime) -> String {
    let secs = t.0.min(MAX_RFC3339_SECS);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of `days` after 1970-01-01, counting in 400-year eras of 146 097
/// days (each era repeats the leap pattern exactly), with years starting on 1 March so the
/// leap day falls last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01: 719 468 days before 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, 0..=365
    let mp = (5 * doy + 2) / 153; // March = 0 .. February = 11
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_955_199, "2000-03-01T23:59:59Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (MAX_RFC3339_SECS, "9999-12-31T23:59:59Z"),
            (u64::MAX, "9999-12-31T23:59:59Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(WallTime(secs)), want, "{secs}");
        }
    }

    proptest! {
        #[test]
        fn rfc3339_is_strictly_increasing_and_well_formed(t in 0..MAX_RFC3339_SECS) {
            let a = rfc3339(WallTime(t));
            let b = rfc3339(WallTime(t + 1));
            prop_assert!(a < b, "{} !< {}", a, b);
            prop_assert_eq!(a.len(), 20);
            let bytes = a.as_bytes();
            prop_assert!(bytes[4] == b'-' && bytes[7] == b'-' && bytes[10] == b'T' && bytes[19] == b'Z');
            let month: u32 = a[5..7].parse().unwrap();
            let day: u32 = a[8..10].parse().unwrap();
            prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
        }
    }

    fn record(event: EventCode) -> AuditRecord {
        AuditRecord {
            event,
            time: WallTime(1_700_000_000),
            trunk: Trunk::Admin,
            transport: Transport::Udp,
            source: Some("192.0.2.1:5060".parse().unwrap()),
            admin: Some(AdminId::parse("1001").unwrap()),
            reason: Some(Reason::from(DenyReason::DigitNotOwned)),
        }
    }

    #[test]
    fn json_line_has_the_stable_shape() {
        let line = record(EventCode::SignalFail).to_json_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(
            line,
            "{\"ts\":\"2023-11-14T22:13:20Z\",\"event\":\"signal.fail\",\"trunk\":\"admin\",\
             \"transport\":\"udp\",\"source\":\"192.0.2.1:5060\",\"admin\":\"1001\",\
             \"reason\":\"digit_not_owned\"}\n"
        );
        let mut r = record(EventCode::OriginateRefused);
        r.admin = None;
        r.reason = None;
        r.source = Some("[2001:db8::1]:5061".parse().unwrap());
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["event"], "originate.refused");
        assert_eq!(v["admin"], serde_json::Value::Null);
        assert_eq!(v["source"], "[2001:db8::1]:5061");
    }

    #[test]
    fn decisions_and_gate_events_map_to_stable_codes() {
        let origin = Origin {
            trunk: Trunk::User,
            transport: Transport::Tls,
            source: None,
        };
        let a = AdminId::parse("1001").unwrap();
        let t = WallTime(0);
        let allow = Decision::Allow {
            admin: a.clone(),
            numbers: vec![],
        };
        let r = AuditRecord::for_decision(&allow, t, origin, None);
        assert_eq!(
            (r.event, r.reason, r.admin.as_ref()),
            (EventCode::SignalOk, None, Some(&a))
        );
        let r =
            AuditRecord::for_decision(&Decision::Deny(DenyReason::BadCredentials), t, origin, None);
        assert_eq!(
            (r.event, r.reason),
            (EventCode::AuthFail, Some(Reason::BadCredentials))
        );
        let r = AuditRecord::for_decision(
            &Decision::Deny(DenyReason::RateLimited),
            t,
            origin,
            Some(a.clone()),
        );
        assert_eq!(
            (r.event, r.reason),
            (EventCode::SignalFail, Some(Reason::RateLimited))
        );
        let lock = GateEvent::Locked {
            admin: a.clone(),
            until: WallTime(9),
        };
        assert_eq!(
            AuditRecord::for_gate_event(&lock, t, origin).event,
            EventCode::Lock
        );
        let unlock = GateEvent::Unlocked {
            admin: a,
            manual: true,
        };
        let r = AuditRecord::for_gate_event(&unlock, t, origin);
        assert_eq!(
            (r.event, r.reason),
            (EventCode::Unlock, Some(Reason::ManualUnlock))
        );
        assert!(r.to_json_line().contains("\"reason\":\"manual_unlock\""));
    }

    #[test]
    fn every_event_code_is_distinct_and_parses_as_json() {
        let mut seen = std::collections::HashSet::new();
        for e in EventCode::ALL {
            assert!(seen.insert(e.as_str()));
            let v: serde_json::Value = serde_json::from_str(&record(e).to_json_line()).unwrap();
            let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
            assert_eq!(
                keys.len(),
                7,
                "fixed key set, nothing else can be added: {keys:?}"
            );
        }
    }

    #[test]
    fn no_secret_appears_in_audit_lines() {
        use crate::gate::pin::digest_ha1s;
        use crate::gate::Secret;
        let (md5, sha) = digest_ha1s("1001", "dialback", &Secret::new("pw"));
        let secrets = ["4321", "pw", md5.as_str(), sha.as_str(), "$argon2id"];
        for e in EventCode::ALL {
            for reason in [
                Reason::BadCredentials,
                Reason::BadResponse,
                Reason::Replayed,
                Reason::CarrierLost,
            ] {
                let mut r = record(e);
                r.reason = Some(reason);
                let line = r.to_json_line();
                for s in secrets {
                    // "pw" cannot occur as a standalone JSON string value.
                    assert!(!line.contains(&format!("\"{s}\"")), "{line}");
                    if s.len() > 4 {
                        assert!(!line.contains(s), "{line}");
                    }
                }
            }
        }
    }
}
