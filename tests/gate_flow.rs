//! Scenario tests of the gate through its public API only: the MESSAGE path (401 challenge,
//! digest credentials from our own client side, signal match, decision, audit line) and the
//! DTMF call path (call flow, PIN check, decision), with a deterministic clock. They stand in
//! for the runtime's wiring (DESIGN.md "The flow", steps 2–4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dialback::gate::audit::{AuditRecord, Origin, Transport, Trunk};
use dialback::gate::decide::{
    decide, Credentials, Decision, DenyReason, GateEvent, GateState, SignalSeen, StartRequest,
};
use dialback::gate::nonce::{
    authenticate_message, challenges, issue_nonce, MessageAuth, MessageRequest, NonceKey,
    ReplayTable,
};
use dialback::gate::pin::{digest_ha1s, verify_pin};
use dialback::gate::policy::{AdminInput, Policy, PolicyInput};
use dialback::gate::signal::{match_message, Action, CallFlow, Cue, FlowConfig, TextSignal};
use dialback::gate::{Secret, WallTime};
use dialback::sip::digest::{authorization, select_challenge, ClientCredentials, ResponseParams};

/// argon2id of "4321" with m=64,t=1,p=1 (cheap, for tests).
const PIN_4321: &str =
    "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$cKqynazHVS4DvlvnXl16KmP360pw6KHGtemFQRUMDrk";
const REALM: &str = "gate.example";
const GATE_URI: &str = "sip:maint@gate.example";
const T0: WallTime = WallTime(1_764_000_000);

fn admin(digit: u8, id: &str, password: &str) -> AdminInput {
    let (md5, sha256) = digest_ha1s(id, REALM, &Secret::new(password));
    AdminInput {
        digit,
        id: id.into(),
        name: format!("admin {digit}"),
        numbers: vec![
            format!("sip:desk{digit}@pbx.example"),
            "tel:+81-90-0000-0000".into(),
        ],
        pin_hash: Some(PIN_4321.into()),
        ha1_realm: Some(REALM.into()),
        ha1_md5: Some(md5),
        ha1_sha256: Some(sha256),
    }
}

fn policy() -> Policy {
    Policy::parse(PolicyInput {
        realm: REALM.into(),
        admins: vec![admin(1, "1001", "alpha"), admin(2, "1002", "bravo")],
        signal: Default::default(),
        callback: Default::default(),
        security: Default::default(),
        digest_algorithms: Vec::new(),
    })
    .expect("valid policy")
}

struct Counter(u64);
impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 += 1;
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn src() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 5060)
}

/// The server side of one MESSAGE: authenticate, match, decide. Returns the decision (or
/// `None` for a 401) and the audit line written before anything is dialled.
struct Gate {
    policy: Policy,
    key: NonceKey,
    replay: ReplayTable,
    state: GateState,
    rng: Counter,
}

impl Gate {
    fn new() -> Self {
        Gate {
            policy: policy(),
            key: NonceKey::new([42; 32]),
            replay: ReplayTable::new(64),
            state: GateState::new(),
            rng: Counter(0),
        }
    }

    fn on_message(
        &mut self,
        authz: Option<&str>,
        body: &[u8],
        now: WallTime,
    ) -> Result<(Decision, String), Vec<String>> {
        let req = MessageRequest {
            authorization: authz,
            method: "MESSAGE",
            request_uri: GATE_URI,
            body,
        };
        let credentials =
            match authenticate_message(&self.policy, &self.key, &mut self.replay, &req, now) {
                MessageAuth::Challenge { stale } => {
                    let nonce = issue_nonce(&self.key, now, &mut self.rng);
                    return Err(challenges(&self.policy, &nonce, stale));
                }
                MessageAuth::Authenticated(id) => Credentials::Valid(id),
                MessageAuth::Rejected { claimed, .. } => Credentials::Invalid { claimed },
            };
        let signal = match match_message(self.policy.signal(), body) {
            TextSignal::Start(d) => SignalSeen::Matched(d),
            _ => SignalSeen::Unmatched,
        };
        let admin = match &credentials {
            Credentials::Valid(id) => Some(id.clone()),
            Credentials::Invalid { claimed } => claimed.clone(),
        };
        let request = StartRequest {
            source: src().ip(),
            credentials,
            signal,
            authenticated_at: now,
            audit_available: true,
        };
        let decision = decide(&self.policy, &request, now, &mut self.state);
        let origin = Origin {
            trunk: Trunk::Admin,
            transport: Transport::Udp,
            source: Some(src()),
        };
        let line = AuditRecord::for_decision(&decision, now, origin, admin).to_json_line();
        Ok((decision, line))
    }
}

fn client_authorization(challenges: &[String], user: &str, password: &str, body: &[u8]) -> String {
    let refs: Vec<&str> = challenges.iter().map(String::as_str).collect();
    let ch = select_challenge(&refs).expect("a supported challenge");
    authorization(
        &ch,
        &ClientCredentials {
            username: user,
            password,
        },
        &ResponseParams {
            method: "MESSAGE",
            uri: GATE_URI,
            body,
            nc: 1,
            cnonce: "0a4f113b",
        },
    )
}

#[test]
fn message_with_digest_and_own_digit_triggers_a_callback_to_registered_numbers() {
    let mut gate = Gate::new();
    let body = b"MAINTAIN-1\r\n";
    let challenges = gate.on_message(None, body, T0).expect_err("401 first");
    assert!(challenges[0].contains("algorithm=SHA-256"));
    let authz = client_authorization(&challenges, "1001", "alpha", body);
    assert!(authz.contains("algorithm=SHA-256"));
    let (decision, line) = gate
        .on_message(Some(&authz), body, T0.plus(1))
        .expect("no second challenge");
    match decision {
        Decision::Allow { admin, numbers } => {
            assert_eq!(admin.as_str(), "1001");
            let dialled: Vec<&str> = numbers.iter().map(|n| n.as_str()).collect();
            assert_eq!(dialled, ["sip:desk1@pbx.example", "tel:+81-90-0000-0000"]);
        }
        d => panic!("{d:?}"),
    }
    assert!(line.contains("\"event\":\"signal.ok\""), "{line}");
    assert!(line.contains("\"admin\":\"1001\""), "{line}");
    assert!(!line.contains("alpha") && !line.contains(&authz));

    // The same credentials replayed (same nonce and nc) are refused.
    let (decision, _) = gate.on_message(Some(&authz), body, T0.plus(2)).unwrap();
    assert_eq!(decision, Decision::Deny(DenyReason::BadCredentials));
}

#[test]
fn authenticated_admin_cannot_trigger_another_admins_callback() {
    let mut gate = Gate::new();
    let body = b"MAINTAIN-2";
    let challenges = gate.on_message(None, body, T0).unwrap_err();
    let authz = client_authorization(&challenges, "1001", "alpha", body);
    let (decision, line) = gate.on_message(Some(&authz), body, T0).unwrap();
    assert_eq!(decision, Decision::Deny(DenyReason::DigitNotOwned));
    assert!(line.contains("\"reason\":\"digit_not_owned\""), "{line}");
}

#[test]
fn md5_only_user_agent_is_served_by_the_second_challenge() {
    let mut gate = Gate::new();
    let body = b"MAINTAIN-2";
    let challenges = gate.on_message(None, body, T0).unwrap_err();
    // A user agent that skips SHA-256 (RFC 8760 §2.4) answers the MD5 challenge.
    let authz = client_authorization(&challenges[1..], "1002", "bravo", body);
    assert!(authz.contains("algorithm=MD5"));
    let (decision, _) = gate.on_message(Some(&authz), body, T0).unwrap();
    assert!(matches!(decision, Decision::Allow { .. }), "{decision:?}");
}

fn run_call(
    policy: &Policy,
    state: &mut GateState,
    now: WallTime,
    keyed: &str,
) -> (Vec<Action>, Vec<Decision>) {
    let mut t = Instant::now();
    let mut flow = CallFlow::new(FlowConfig::from_policy(policy), t);
    let mut actions = Vec::new();
    let mut decisions = Vec::new();
    let mut digits = keyed.chars();
    loop {
        while let Some(a) = flow.poll_action() {
            if let Action::Submit(attempt) = &a {
                // The runtime runs this off the reactor (argon2).
                let credentials = match verify_pin(policy, &attempt.id, &attempt.pin) {
                    Some(id) => Credentials::Valid(id),
                    None => Credentials::Invalid {
                        claimed: policy.admin_by_id(&attempt.id).map(|a| a.id().clone()),
                    },
                };
                let req = StartRequest {
                    source: src().ip(),
                    credentials,
                    signal: attempt.signal,
                    authenticated_at: WallTime(now.0 - attempt.since_auth.as_secs()),
                    audit_available: true,
                };
                let d = decide(policy, &req, now, state);
                flow.decided(t, &d);
                decisions.push(d);
            }
            actions.push(a);
        }
        if flow.is_done() {
            break;
        }
        match digits.next() {
            Some(c) => {
                t += Duration::from_millis(250);
                flow.handle_digit(t, c);
            }
            None => {
                let Some(deadline) = flow.poll_timeout() else {
                    break;
                };
                t = deadline;
                flow.handle_timeout(t);
            }
        }
    }
    (actions, decisions)
}

#[test]
fn dtmf_call_with_id_pin_and_signal_is_allowed_and_hung_up() {
    let p = policy();
    let mut state = GateState::new();
    let (actions, decisions) = run_call(&p, &mut state, T0, "1002#4321#*62468246*2#");
    assert!(matches!(decisions.as_slice(), [Decision::Allow { .. }]));
    assert_eq!(
        &actions[actions.len() - 3..],
        &[
            Action::PlayCue(Cue::Ok),
            Action::PlayCue(Cue::Goodbye),
            Action::Hangup
        ]
    );
}

#[test]
fn pin_guessing_across_calls_locks_the_admin() {
    let p = policy();
    let mut state = GateState::new();
    let max = p.security().max_failures() as usize;
    let tries = p.security().tries_per_call() as usize;
    let mut guesses = 0;
    let mut now = T0;
    while guesses < max {
        let (_, decisions) = run_call(&p, &mut state, now, &"1001#0000#*62468246*1#".repeat(tries));
        guesses += decisions.len();
        now = now.plus(30);
    }
    assert!(matches!(state.poll_event(), Some(GateEvent::Locked { .. })));
    // The right PIN no longer helps.
    let (actions, decisions) = run_call(&p, &mut state, now, "1001#4321#*62468246*1#");
    assert_eq!(decisions, vec![Decision::Deny(DenyReason::Locked)]);
    assert_eq!(actions.last(), Some(&Action::Hangup));
    assert!(!actions.contains(&Action::PlayCue(Cue::Ok)));
}
