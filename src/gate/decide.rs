//! The decision: may this authenticated start signal trigger a callback? (DESIGN.md step 4;
//! JP H11-053315 claim 1, claim 2, \[0016\], \[0029\]).
//!
//! [`decide`] is total and denies by default: it returns [`Decision::Allow`] only when every
//! rule passed, and otherwise a [`DenyReason`] naming the first rule that failed. It owns the
//! counters the rules need ([`GateState`]: per-administrator failures, lockouts, callback
//! history and the active-callback mark; per-source failures), which are serde-serialisable
//! so the runtime can persist them across restarts. Pure: wall time is passed in, no IO.
//! Credential checks (digest, argon2) happen before and arrive as [`Credentials`]; the numbers
//! to dial come only from the policy, never from the request.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::policy::{AdminDigit, AdminId, CallbackNumber, Policy};
use super::WallTime;

/// Seconds in the per-administrator rate window (`max_per_admin_per_hour`).
pub const RATE_WINDOW_S: u64 = 3600;
/// An authentication stamped this far in the future is still accepted (clock steps).
const FUTURE_SKEW_S: u64 = 5;
/// Most sources tracked for per-source penalties.
pub const MAX_SOURCES: usize = 4096;

/// The outcome of the authentication step, established by `nonce::authenticate_message` or
/// by `pin::verify_pin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Proven to be this administrator.
    Valid(AdminId),
    /// Not proven. `claimed` is the administrator whose ID was given, if one exists, so the
    /// failure counts towards their lockout.
    Invalid { claimed: Option<AdminId> },
}

/// What the start signal carried (\[0011\], claim 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalSeen {
    Matched(AdminDigit),
    Unmatched,
}

/// One maintenance start request, everything already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartRequest {
    /// Where the request came from (the transport source address, not a header).
    pub source: IpAddr,
    pub credentials: Credentials,
    pub signal: SignalSeen,
    /// When the authentication step succeeded; the signal must follow within `window_s`.
    pub authenticated_at: WallTime,
    /// Whether the audit sink can take the record of this decision: no audit, no callback.
    pub audit_available: bool,
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    AuditUnavailable,
    SourcePenalty,
    Locked,
    BadCredentials,
    UnknownSignal,
    DigitNotOwned,
    WindowExpired,
    CallbackActive,
    RateLimited,
}

impl DenyReason {
    /// Whether the failure is the caller's guess being wrong (counted towards lockout), as
    /// opposed to a limit being hit.
    pub fn is_failed_attempt(self) -> bool {
        matches!(
            self,
            DenyReason::BadCredentials | DenyReason::UnknownSignal | DenyReason::DigitNotOwned
        )
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Call back `admin` on `numbers`, the ones registered in advance (\[0016\]), in priority
    /// order (DESIGN.md step 5).
    Allow {
        admin: AdminId,
        numbers: Vec<CallbackNumber>,
    },
    Deny(DenyReason),
}

/// Something the runtime should audit, produced as a side effect of a decision or of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateEvent {
    Locked {
        admin: AdminId,
        until: WallTime,
    },
    /// `manual`: lifted by [`GateState::unlock`] rather than expired.
    Unlocked {
        admin: AdminId,
        manual: bool,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AdminCounters {
    failures: Vec<WallTime>,
    locked_until: Option<WallTime>,
    callbacks: Vec<WallTime>,
    active: bool,
}

/// Counters behind the rules. Serialisable; persist it and call [`GateState::after_restart`]
/// when loading it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateState {
    admins: BTreeMap<AdminId, AdminCounters>,
    sources: BTreeMap<IpAddr, Vec<WallTime>>,
    #[serde(skip)]
    events: VecDeque<GateEvent>,
}

/// Decides a start request. Deny by default; the first failing rule names the reason.
pub fn decide(
    policy: &Policy,
    req: &StartRequest,
    now: WallTime,
    state: &mut GateState,
) -> Decision {
    let sec = policy.security();
    // Every decision is audited before anything is dialled (DESIGN.md step 4).
    if !req.audit_available {
        return Decision::Deny(DenyReason::AuditUnavailable);
    }
    if state.source_failures(req.source, now, sec.failure_window_s())
        >= sec.per_source_max_failures() as usize
    {
        return Decision::Deny(DenyReason::SourcePenalty);
    }
    let claimed = match &req.credentials {
        Credentials::Valid(id) => Some(id),
        Credentials::Invalid { claimed } => claimed.as_ref(),
    };
    if claimed.is_some_and(|id| state.is_locked(id, now)) {
        return Decision::Deny(DenyReason::Locked);
    }
    let admin = match &req.credentials {
        Credentials::Valid(id) => policy.admin_by_id(id.as_str()),
        Credentials::Invalid { .. } => None,
    };
    let Some(admin) = admin else {
        state.record_failure(policy, claimed, req.source, now);
        return Decision::Deny(DenyReason::BadCredentials);
    };
    let id = admin.id();
    let SignalSeen::Matched(digit) = req.signal else {
        state.record_failure(policy, Some(id), req.source, now);
        return Decision::Deny(DenyReason::UnknownSignal);
    };
    // Claim 2: the recognition digit must name the administrator who authenticated.
    if digit != admin.digit() {
        state.record_failure(policy, Some(id), req.source, now);
        return Decision::Deny(DenyReason::DigitNotOwned);
    }
    if req.authenticated_at > now.plus(FUTURE_SKEW_S)
        || now.since(req.authenticated_at) > policy.signal().window_s()
    {
        return Decision::Deny(DenyReason::WindowExpired);
    }
    let counters = state.admins.entry(id.clone()).or_default();
    if counters.active {
        return Decision::Deny(DenyReason::CallbackActive);
    }
    counters
        .callbacks
        .retain(|t| now.since(*t) < RATE_WINDOW_S && *t <= now);
    if counters.callbacks.len() >= policy.callback().max_per_admin_per_hour() as usize {
        return Decision::Deny(DenyReason::RateLimited);
    }
    counters.active = true;
    counters.callbacks.push(now);
    counters.failures.clear();
    Decision::Allow {
        admin: id.clone(),
        numbers: admin.numbers().to_vec(),
    }
}

impl GateState {
    pub fn new() -> Self {
        GateState::default()
    }

    /// The callback for `admin` ended (answered and closed, or all numbers failed); another
    /// may start.
    pub fn callback_finished(&mut self, admin: &AdminId) {
        if let Some(c) = self.admins.get_mut(admin) {
            c.active = false;
        }
    }

    /// Call after loading persisted state: no callback survives a restart, so none is active.
    /// Lockouts and failure counts stay.
    pub fn after_restart(&mut self) {
        for c in self.admins.values_mut() {
            c.active = false;
        }
    }

    /// Lifts a lock by hand (operator action); audited as `unlock`.
    pub fn unlock(&mut self, admin: &AdminId) {
        if let Some(c) = self.admins.get_mut(admin) {
            if c.locked_until.take().is_some() {
                c.failures.clear();
                self.events.push_back(GateEvent::Unlocked {
                    admin: admin.clone(),
                    manual: true,
                });
            }
        }
    }

    /// Expires locks and drops counts older than their windows. Call it from a timer.
    pub fn handle_time(&mut self, policy: &Policy, now: WallTime) {
        let window = policy.security().failure_window_s();
        for (id, c) in &mut self.admins {
            if c.locked_until.is_some_and(|t| t <= now) {
                c.locked_until = None;
                self.events.push_back(GateEvent::Unlocked {
                    admin: id.clone(),
                    manual: false,
                });
            }
            c.failures.retain(|t| now.since(*t) < window);
            c.callbacks.retain(|t| now.since(*t) < RATE_WINDOW_S);
        }
        self.admins.retain(|_, c| {
            c.active
                || c.locked_until.is_some()
                || !c.failures.is_empty()
                || !c.callbacks.is_empty()
        });
        for f in self.sources.values_mut() {
            f.retain(|t| now.since(*t) < window);
        }
        self.sources.retain(|_, f| !f.is_empty());
    }

    /// Next event to audit.
    pub fn poll_event(&mut self) -> Option<GateEvent> {
        self.events.pop_front()
    }

    pub fn is_locked(&self, admin: &AdminId, now: WallTime) -> bool {
        self.admins
            .get(admin)
            .and_then(|c| c.locked_until)
            .is_some_and(|t| t > now)
    }

    pub fn is_active(&self, admin: &AdminId) -> bool {
        self.admins.get(admin).is_some_and(|c| c.active)
    }

    /// Callbacks placed for `admin` in the last hour.
    pub fn recent_callbacks(&self, admin: &AdminId, now: WallTime) -> usize {
        self.admins.get(admin).map_or(0, |c| {
            c.callbacks
                .iter()
                .filter(|t| now.since(**t) < RATE_WINDOW_S && **t <= now)
                .count()
        })
    }

    /// Failures from `source` within `window_s` before `now`.
    pub fn source_failures(&self, source: IpAddr, now: WallTime, window_s: u64) -> usize {
        self.sources.get(&source).map_or(0, |f| {
            f.iter()
                .filter(|t| now.since(**t) < window_s && **t <= now)
                .count()
        })
    }

    /// Counts a failed attempt against `source` and, if known, the claimed administrator;
    /// locks the administrator after `max_failures` within `failure_window_s`. [`decide`]
    /// calls this itself; the runtime calls it for failures that never reach a decision
    /// (a call that timed out after a wrong ID, a MESSAGE whose digest failed).
    pub fn record_failure(
        &mut self,
        policy: &Policy,
        claimed: Option<&AdminId>,
        source: IpAddr,
        now: WallTime,
    ) {
        let sec = policy.security();
        let window = sec.failure_window_s();
        let cap = sec.per_source_max_failures() as usize;
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_SOURCES {
            self.sources
                .retain(|_, f| f.iter().any(|t| now.since(*t) < window));
            if self.sources.len() >= MAX_SOURCES {
                // Still full of live entries: forget the source whose last failure is oldest,
                // so memory stays bounded under a spread attack. Admin lockout still applies.
                let oldest = self
                    .sources
                    .iter()
                    .min_by_key(|(_, f)| f.last().copied())
                    .map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    self.sources.remove(&ip);
                }
            }
        }
        let f = self.sources.entry(source).or_default();
        f.retain(|t| now.since(*t) < window);
        f.push(now);
        // Only the count up to the penalty threshold matters; keep it bounded.
        if f.len() > cap {
            let excess = f.len() - cap;
            f.drain(..excess);
        }

        let Some(id) = claimed else { return };
        if policy.admin_by_id(id.as_str()).is_none() {
            return;
        }
        let c = self.admins.entry(id.clone()).or_default();
        c.failures.retain(|t| now.since(*t) < window);
        c.failures.push(now);
        if c.failures.len() >= sec.max_failures() as usize {
            let until = now.plus(sec.lock_s());
            c.locked_until = Some(until);
            c.failures.clear();
            self.events.push_back(GateEvent::Locked {
                admin: id.clone(),
                until,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::gate::policy::tests::{admin_input, input};
    use crate::gate::policy::{PolicyInput, SecurityInput};

    const NOW: WallTime = WallTime(1_000_000);

    fn test_policy() -> Policy {
        let mut i: PolicyInput = input();
        i.admins.push(admin_input(3, "1003"));
        i.security = SecurityInput {
            max_failures: 3,
            per_source_max_failures: 5,
            failure_window_s: 600,
            lock_s: 900,
            ..SecurityInput::default()
        };
        Policy::parse(i).unwrap()
    }

    fn id(s: &str) -> AdminId {
        AdminId::parse(s).unwrap()
    }

    fn digit(d: u8) -> AdminDigit {
        AdminDigit::new(d).unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    fn good(admin: &str, d: u8) -> StartRequest {
        StartRequest {
            source: ip(1),
            credentials: Credentials::Valid(id(admin)),
            signal: SignalSeen::Matched(digit(d)),
            authenticated_at: NOW,
            audit_available: true,
        }
    }

    #[test]
    fn valid_request_is_allowed_with_the_registered_numbers() {
        let p = test_policy();
        let mut s = GateState::new();
        match decide(&p, &good("1001", 1), NOW, &mut s) {
            Decision::Allow { admin, numbers } => {
                assert_eq!(admin, id("1001"));
                assert_eq!(numbers, p.admin_by_id("1001").unwrap().numbers());
            }
            d => panic!("{d:?}"),
        }
        assert!(s.is_active(&id("1001")));
    }

    #[test]
    fn each_rule_denies_with_its_reason() {
        let p = test_policy();
        type Setup = fn(&Policy, &mut GateState, &mut StartRequest);
        let cases: &[(&str, Setup, DenyReason)] = &[
            (
                "audit down",
                |_, _, r| r.audit_available = false,
                DenyReason::AuditUnavailable,
            ),
            (
                "bad credentials",
                |_, _, r| {
                    r.credentials = Credentials::Invalid {
                        claimed: Some(id("1001")),
                    }
                },
                DenyReason::BadCredentials,
            ),
            (
                "valid id not in policy",
                |_, _, r| r.credentials = Credentials::Valid(id("4444")),
                DenyReason::BadCredentials,
            ),
            (
                "unknown signal",
                |_, _, r| r.signal = SignalSeen::Unmatched,
                DenyReason::UnknownSignal,
            ),
            (
                "digit of another admin",
                |_, _, r| r.signal = SignalSeen::Matched(digit(2)),
                DenyReason::DigitNotOwned,
            ),
            (
                "digit of nobody",
                |_, _, r| r.signal = SignalSeen::Matched(digit(9)),
                DenyReason::DigitNotOwned,
            ),
            (
                "signal after the window",
                |p, _, r| r.authenticated_at = WallTime(NOW.0 - p.signal().window_s() - 1),
                DenyReason::WindowExpired,
            ),
            (
                "auth stamped in the future",
                |_, _, r| r.authenticated_at = NOW.plus(60),
                DenyReason::WindowExpired,
            ),
            (
                "callback already active",
                |p, s, r| {
                    assert!(matches!(decide(p, r, NOW, s), Decision::Allow { .. }));
                },
                DenyReason::CallbackActive,
            ),
            (
                "rate limit",
                |p, s, r| {
                    for _ in 0..p.callback().max_per_admin_per_hour() {
                        assert!(matches!(decide(p, r, NOW, s), Decision::Allow { .. }));
                        s.callback_finished(&id("1001"));
                    }
                },
                DenyReason::RateLimited,
            ),
            (
                "locked admin even with valid credentials",
                |p, s, _| {
                    for _ in 0..p.security().max_failures() {
                        s.record_failure(p, Some(&id("1001")), ip(9), NOW);
                    }
                },
                DenyReason::Locked,
            ),
            (
                "penalised source",
                |p, s, r| {
                    for _ in 0..p.security().per_source_max_failures() {
                        s.record_failure(p, None, r.source, NOW);
                    }
                },
                DenyReason::SourcePenalty,
            ),
        ];
        for (name, setup, reason) in cases {
            let mut s = GateState::new();
            let mut r = good("1001", 1);
            setup(&p, &mut s, &mut r);
            assert_eq!(
                decide(&p, &r, NOW, &mut s),
                Decision::Deny(*reason),
                "{name}"
            );
        }
    }

    #[test]
    fn failures_lock_the_admin_and_the_lock_expires() {
        let p = test_policy();
        let mut s = GateState::new();
        let bad = StartRequest {
            credentials: Credentials::Invalid {
                claimed: Some(id("1002")),
            },
            ..good("1002", 2)
        };
        for i in 0..3 {
            let at = NOW.plus(i);
            assert_eq!(
                decide(
                    &p,
                    &StartRequest {
                        source: ip(10 + i as u8),
                        ..bad.clone()
                    },
                    at,
                    &mut s
                ),
                Decision::Deny(DenyReason::BadCredentials)
            );
        }
        let until = NOW.plus(2 + p.security().lock_s());
        assert_eq!(
            s.poll_event(),
            Some(GateEvent::Locked {
                admin: id("1002"),
                until
            })
        );
        let later = NOW.plus(10);
        assert_eq!(
            decide(
                &p,
                &StartRequest {
                    authenticated_at: later,
                    ..good("1002", 2)
                },
                later,
                &mut s
            ),
            Decision::Deny(DenyReason::Locked)
        );
        // Other administrators are unaffected.
        assert!(matches!(
            decide(&p, &good("1003", 3), NOW, &mut s),
            Decision::Allow { .. }
        ));
        s.handle_time(&p, until);
        assert_eq!(
            s.poll_event(),
            Some(GateEvent::Unlocked {
                admin: id("1002"),
                manual: false
            })
        );
        assert!(matches!(
            decide(
                &p,
                &StartRequest {
                    authenticated_at: until,
                    ..good("1002", 2)
                },
                until,
                &mut s
            ),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn failures_outside_the_window_do_not_lock() {
        let p = test_policy();
        let mut s = GateState::new();
        for i in 0..10u64 {
            s.record_failure(&p, Some(&id("1001")), ip(1), NOW.plus(i * 300));
        }
        assert!(!s.is_locked(&id("1001"), NOW.plus(3000)));
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn wrong_signal_after_valid_credentials_counts_towards_lockout() {
        let p = test_policy();
        let mut s = GateState::new();
        for _ in 0..3 {
            let r = StartRequest {
                signal: SignalSeen::Matched(digit(2)),
                ..good("1001", 1)
            };
            assert_eq!(
                decide(&p, &r, NOW, &mut s),
                Decision::Deny(DenyReason::DigitNotOwned)
            );
        }
        assert!(s.is_locked(&id("1001"), NOW));
    }

    #[test]
    fn callback_finished_and_restart_clear_the_active_mark() {
        let p = test_policy();
        let mut s = GateState::new();
        assert!(matches!(
            decide(&p, &good("1001", 1), NOW, &mut s),
            Decision::Allow { .. }
        ));
        s.callback_finished(&id("1001"));
        assert!(!s.is_active(&id("1001")));
        assert!(matches!(
            decide(&p, &good("1001", 1), NOW, &mut s),
            Decision::Allow { .. }
        ));
        let json = serde_json::to_string(&s).unwrap();
        let mut back: GateState = serde_json::from_str(&json).unwrap();
        assert!(back.is_active(&id("1001")));
        back.after_restart();
        assert!(!back.is_active(&id("1001")));
        assert_eq!(back.recent_callbacks(&id("1001"), NOW), 2);
    }

    #[test]
    fn state_round_trips_through_json_with_locks() {
        let p = test_policy();
        let mut s = GateState::new();
        for _ in 0..3 {
            s.record_failure(&p, Some(&id("1003")), ip(7), NOW);
        }
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"1003\""), "{json}");
        assert!(json.contains("192.0.2.7"), "{json}");
        let back: GateState = serde_json::from_str(&json).unwrap();
        assert!(back.is_locked(&id("1003"), NOW));
        assert_eq!(back.source_failures(ip(7), NOW, 600), 3);
        // A hand-edited state with a bad ID is refused, not trusted.
        assert!(serde_json::from_str::<GateState>(&json.replace("\"1003\"", "\"x\"")).is_err());
    }

    #[test]
    fn source_table_stays_bounded() {
        let p = test_policy();
        let mut s = GateState::new();
        for n in 0..(MAX_SOURCES as u32 + 100) {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            s.record_failure(&p, None, src, NOW);
        }
        assert!(s.sources.len() <= MAX_SOURCES);
        for _ in 0..100 {
            s.record_failure(&p, None, ip(1), NOW);
        }
        assert_eq!(s.sources[&ip(1)].len(), 5);
    }

    #[test]
    fn manual_unlock_is_reported() {
        let p = test_policy();
        let mut s = GateState::new();
        for _ in 0..3 {
            s.record_failure(&p, Some(&id("1001")), ip(1), NOW);
        }
        let _ = s.poll_event();
        s.unlock(&id("1001"));
        assert!(!s.is_locked(&id("1001"), NOW));
        assert_eq!(
            s.poll_event(),
            Some(GateEvent::Unlocked {
                admin: id("1001"),
                manual: true
            })
        );
        s.unlock(&id("1001"));
        assert_eq!(s.poll_event(), None);
    }

    #[derive(Debug, Clone)]
    struct Req {
        source: u8,
        /// `None`: no ID claimed; otherwise the ID given.
        who: Option<&'static str>,
        valid: bool,
        /// 0..6: the claimed admin's own digit; 6..9: the digit in `digit`; 9: no match.
        signal_kind: u8,
        digit: u8,
        auth_age: i64,
        audit: bool,
        dt: u64,
        finish: bool,
    }

    fn arb_req() -> impl Strategy<Value = Req> {
        (
            (
                0u8..8,
                prop::option::weighted(
                    0.9,
                    prop::sample::select(vec!["1001", "1002", "1003", "4444"]),
                ),
            ),
            prop::bool::weighted(0.7),
            (0u8..10, 0u8..10),
            -10i64..150,
            prop::bool::weighted(0.95),
            0u64..900,
            prop::bool::weighted(0.5),
        )
            .prop_map(
                |((source, who), valid, (signal_kind, digit), auth_age, audit, dt, finish)| Req {
                    source,
                    who,
                    valid,
                    signal_kind,
                    digit,
                    auth_age,
                    audit,
                    dt,
                    finish,
                },
            )
    }

    proptest! {
        /// Nothing is allowed unless every rule allowed it: valid credentials of a configured
        /// administrator, own digit, not locked, source not penalised, within the window, no
        /// active callback, under the hourly rate, audit up. And the numbers are the policy's.
        #[test]
        fn nothing_is_allowed_unless_every_rule_allows(reqs in prop::collection::vec(arb_req(), 1..60)) {
            let p = test_policy();
            let mut s = GateState::new();
            let mut now = NOW;
            for r in reqs {
                now = now.plus(r.dt);
                let credentials = match r.who {
                    Some(who) if r.valid => Credentials::Valid(id(who)),
                    Some(who) => Credentials::Invalid { claimed: Some(id(who)) },
                    None => Credentials::Invalid { claimed: None },
                };
                let own = r.who.and_then(|w| p.admin_by_id(w)).map(|a| a.digit());
                let signal = match (r.signal_kind, own) {
                    (0..=5, Some(d)) => SignalSeen::Matched(d),
                    (9, _) => SignalSeen::Unmatched,
                    _ => SignalSeen::Matched(digit(r.digit)),
                };
                let req = StartRequest {
                    source: ip(r.source),
                    credentials: credentials.clone(),
                    signal,
                    authenticated_at: WallTime((now.0 as i64 - r.auth_age) as u64),
                    audit_available: r.audit,
                };
                let before = s.clone();
                let decision = decide(&p, &req, now, &mut s);
                if let Decision::Allow { admin, numbers } = decision {
                    let Credentials::Valid(who) = &credentials else {
                        panic!("allowed without valid credentials");
                    };
                    prop_assert_eq!(&admin, who);
                    let a = p.admin_by_id(who.as_str()).expect("allowed an unknown admin");
                    prop_assert_eq!(req.signal, SignalSeen::Matched(a.digit()));
                    prop_assert!(!before.is_locked(who, now));
                    prop_assert!(before.source_failures(req.source, now, 600) < 5);
                    prop_assert!(
                        (-5..=p.signal().window_s() as i64).contains(&r.auth_age)
                    );
                    prop_assert!(!before.is_active(who));
                    prop_assert!(before.recent_callbacks(who, now) < p.callback().max_per_admin_per_hour() as usize);
                    prop_assert!(req.audit_available);
                    prop_assert_eq!(numbers.as_slice(), a.numbers());
                    if r.finish {
                        s.callback_finished(who);
                    }
                }
                s.handle_time(&p, now);
                while s.poll_event().is_some() {}
            }
        }
    }
}
