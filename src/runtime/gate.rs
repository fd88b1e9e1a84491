//! The gate actor: one task that owns the pure gate state (policy, nonces, replay table,
//! lockout counters), takes MESSAGE requests from the user and admin trunk tasks, and answers
//! them. Decisions are audited (fsync) before the answer goes out and before anything is
//! dialled; the counters are persisted so locks survive a restart (issue 4).
//!
//! Identity comes only from the digest username (RFC 3261 §22; DESIGN.md step 2), never from
//! From, P-Asserted-Identity or the source address. Once authenticated, the answer is always
//! `202 Accepted`, whether or not the signal was right: no oracle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::config::{self, Dialplan, Otherwise};
use crate::gate::audit::{AuditRecord, Origin, Transport, Trunk};
use crate::gate::decide::{decide, Credentials, Decision, GateState, SignalSeen, StartRequest};
use crate::gate::nonce::{
    authenticate_message, challenges, issue_nonce, MessageAuth, MessageRequest, NonceKey,
    ReplayTable,
};
use crate::gate::pin::verify_pin;
use crate::gate::policy::AdminId;
use crate::gate::policy::{
    AdminInput, CallbackInput, OnDiversion, Policy, PolicyInput, SecurityInput, SignalInput,
};
use crate::gate::signal::{match_message, DtmfAttempt, TextSignal};
use crate::gate::{GateError, WallTime};
use crate::runtime::audit::AuditLog;
use crate::runtime::callback::CallbackOrder;
use crate::runtime::state;
use crate::sip::build::Extras;
use crate::sip::endpoint::TrunkKind;
use crate::sip::transaction::ServerTxnId;

/// Capacity of the (nonce, nc) replay table.
const REPLAY_ENTRIES: usize = 4096;
/// Depth of the request queue into the gate; a full queue answers 503.
pub const GATE_QUEUE: usize = 256;

/// A request a trunk hands to the gate.
#[derive(Debug)]
pub struct AppRequest {
    pub trunk: TrunkKind,
    pub src: SocketAddr,
    pub tcp: bool,
    pub id: ServerTxnId,
    pub request_uri: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// Where the answer goes (the trunk task's reply queue).
    pub reply: mpsc::Sender<AppReply>,
}

/// A DTMF attempt from a call on the user or admin trunk: ID, PIN and signal as keyed.
#[derive(Debug)]
pub struct DtmfRequest {
    pub trunk: TrunkKind,
    pub src: SocketAddr,
    pub tcp: bool,
    pub attempt: DtmfAttempt,
    pub reply: oneshot::Sender<Decision>,
}

/// The answer to an [`AppRequest`].
#[derive(Debug)]
pub struct AppReply {
    pub id: ServerTxnId,
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
}

/// Errors while setting the gate up (exit code 2 or 1 at start).
#[derive(Debug, thiserror::Error)]
pub enum GateSetupError {
    // Policy errors are dialplan errors (exit 2); audit and state errors are runtime (exit 1).
    #[error("gate policy: {0}")]
    Policy(#[from] GateError),
    #[error(transparent)]
    Audit(#[from] crate::runtime::audit::AuditError),
    #[error(transparent)]
    State(#[from] crate::runtime::state::StateError),
}

/// What the gate task owns.
pub struct Gate {
    policy: Policy,
    routes: config::Routes,
    key: NonceKey,
    replay: ReplayTable,
    state: GateState,
    state_path: PathBuf,
    audit: AuditLog,
}

impl Gate {
    /// Build from a dialplan: policy, audit log (opened now, so a bad path stops the start),
    /// persisted counters. `None` when the dialplan names no administrator: nobody can start
    /// maintenance, so there is nothing to serve (MESSAGEs are then refused by the trunks).
    pub fn from_dialplan(d: &Dialplan) -> Result<Option<Gate>, GateSetupError> {
        if d.admins.is_empty() {
            warn!("no administrators in the dialplan: maintenance starts are impossible");
            return Ok(None);
        }
        let policy = Policy::parse(policy_input(d))?;
        let audit = AuditLog::open(&d.audit.path, d.audit.fsync)?;
        // A corrupt state file stops the start rather than silently clearing locks.
        let state = state::load_state(&d.security.state_path)?;
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Ok(Some(Gate {
            policy,
            routes: d.routes.clone(),
            key: NonceKey::new(secret),
            replay: ReplayTable::new(REPLAY_ENTRIES),
            state,
            state_path: d.security.state_path.clone(),
            audit,
        }))
    }

    /// The policy, shared with the console's re-login on the callback leg.
    pub fn policy(&self) -> std::sync::Arc<Policy> {
        std::sync::Arc::new(self.policy.clone())
    }

    /// The DTMF call flow's settings from the policy (pattern, tries).
    pub fn flow_config(&self) -> crate::gate::signal::FlowConfig {
        crate::gate::signal::FlowConfig::from_policy(&self.policy)
    }

    /// A handle on the audit log, for the originate side's callback records.
    pub fn audit_log(&self) -> AuditLog {
        self.audit.clone()
    }

    /// Serve requests until every sender is gone. Allowed starts become callback orders;
    /// finished callbacks free the administrator's "one active callback" slot.
    pub async fn serve(
        mut self,
        mut rx: mpsc::Receiver<AppRequest>,
        mut dtmf: mpsc::Receiver<DtmfRequest>,
        orders: mpsc::Sender<CallbackOrder>,
        mut finished: mpsc::Receiver<AdminId>,
    ) {
        loop {
            tokio::select! {
                Some(req) = dtmf.recv() => {
                    let (decision, order) = self.on_dtmf(req.trunk, req.src, req.tcp, req.attempt).await;
                    let _ = req.reply.send(decision);
                    if let Some(order) = order {
                        if orders.try_send(order).is_err() {
                            error!("originate trunk cannot take the callback order");
                        }
                    }
                }
                req = rx.recv() => {
                    let Some(req) = req else { break };
                    let (reply, order) = self.on_message(&req).await;
                    if req.reply.send(reply).await.is_err() {
                        warn!("trunk went away before the gate answered");
                    }
                    if let Some(order) = order {
                        if orders.try_send(order).is_err() {
                            error!("originate trunk cannot take the callback order");
                        }
                    }
                }
                Some(admin) = finished.recv() => {
                    self.state.callback_finished(&admin);
                    if let Err(e) = state::save_state_async(&self.state_path, &self.state).await {
                        error!(error = %e, "cannot persist gate counters");
                    }
                }
            }
        }
    }

    /// A keyed ID + PIN + signal from a call (issue 4 flow 2). The PIN is checked with
    /// argon2id off the reactor; unknown IDs cost the same (dummy hash, `gate::pin`).
    async fn on_dtmf(
        &mut self,
        trunk: TrunkKind,
        src: SocketAddr,
        tcp: bool,
        attempt: DtmfAttempt,
    ) -> (Decision, Option<CallbackOrder>) {
        let now = wall_now();
        let policy = self.policy.clone();
        let id = attempt.id.clone();
        let pin = attempt.pin.clone();
        let verified = tokio::task::spawn_blocking(move || verify_pin(&policy, &id, &pin))
            .await
            .unwrap_or(None);
        let credentials = match verified {
            Some(admin) => Credentials::Valid(admin),
            None => Credentials::Invalid {
                claimed: self.policy.admin_by_id(&attempt.id).map(|a| a.id().clone()),
            },
        };
        let since = attempt.since_auth.as_secs();
        let request = StartRequest {
            source: src.ip(),
            credentials,
            signal: attempt.signal,
            authenticated_at: WallTime(now.0.saturating_sub(since)),
            audit_available: self.audit.healthy(),
        };
        self.finish_decision(trunk, src, tcp, request, now).await
    }

    /// Decide, audit (fsync, fail closed), persist counters; the callback order if allowed.
    async fn finish_decision(
        &mut self,
        trunk: TrunkKind,
        src: SocketAddr,
        tcp: bool,
        request: StartRequest,
        now: WallTime,
    ) -> (Decision, Option<CallbackOrder>) {
        let admin = match &request.credentials {
            Credentials::Valid(id) => Some(id.clone()),
            Credentials::Invalid { claimed } => claimed.clone(),
        };
        let decision = decide(&self.policy, &request, now, &mut self.state);
        let origin = Origin {
            trunk: match trunk {
                TrunkKind::User => Trunk::User,
                TrunkKind::Admin => Trunk::Admin,
                TrunkKind::Originate => Trunk::Originate,
            },
            transport: if tcp { Transport::Tcp } else { Transport::Udp },
            source: Some(src),
        };
        let record = AuditRecord::for_decision(&decision, now, origin, admin);
        let origin = Origin {
            source: None,
            ..origin
        };
        let audited = match self.audit.record(&record).await {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "audit write failed: maintenance starts refused until it recovers");
                false
            }
        };
        while let Some(ev) = self.state.poll_event() {
            let rec = AuditRecord::for_gate_event(&ev, now, origin);
            if let Err(e) = self.audit.record(&rec).await {
                error!(error = %e, "audit write failed");
            }
        }
        if let Err(e) = state::save_state_async(&self.state_path, &self.state).await {
            error!(error = %e, "cannot persist gate counters");
        }
        let mut order = None;
        match &decision {
            Decision::Allow { admin, numbers } if audited => {
                info!(target: "audit", admin = %admin, numbers = numbers.len(), "maintenance start allowed; callback due");
                order = Some(CallbackOrder {
                    admin: admin.clone(),
                    numbers: numbers.iter().map(|n| n.as_str().to_string()).collect(),
                });
            }
            Decision::Allow { admin, .. } => {
                // Allowed but not durably audited: fail closed, free the slot again.
                self.state.callback_finished(admin);
            }
            Decision::Deny(reason) => {
                info!(target: "audit", reason = ?reason, src = %src, "maintenance start denied");
            }
        }
        let decision = if order.is_some() || matches!(decision, Decision::Deny(_)) {
            decision
        } else {
            Decision::Deny(crate::gate::decide::DenyReason::AuditUnavailable)
        };
        (decision, order)
    }

    async fn on_message(&mut self, req: &AppRequest) -> (AppReply, Option<CallbackOrder>) {
        let reply = |code, reason, headers| AppReply {
            id: req.id,
            code,
            reason,
            headers,
        };
        let route = match req.trunk {
            TrunkKind::User => &self.routes.user,
            _ => &self.routes.admin,
        };
        if !route.message {
            let (code, reason, extras) = otherwise_answer(&route.otherwise);
            return (reply(code, reason, extras.headers), None);
        }
        let now = wall_now();
        let request_uri = digest_uri(req.authorization.as_deref(), &req.request_uri);
        let msg = MessageRequest {
            authorization: req.authorization.as_deref(),
            method: "MESSAGE",
            request_uri: &request_uri,
            body: &req.body,
        };
        let credentials =
            match authenticate_message(&self.policy, &self.key, &mut self.replay, &msg, now) {
                MessageAuth::Challenge { stale } => {
                    let nonce = issue_nonce(&self.key, now, &mut OsRng);
                    let headers = challenges(&self.policy, &nonce, stale)
                        .into_iter()
                        .map(|c| ("WWW-Authenticate", c))
                        .collect();
                    return (reply(401, "Unauthorized", headers), None);
                }
                MessageAuth::Authenticated(id) => Credentials::Valid(id),
                MessageAuth::Rejected { claimed, .. } => Credentials::Invalid { claimed },
            };
        let authenticated = matches!(credentials, Credentials::Valid(_));
        let signal = match match_message(self.policy.signal(), &req.body) {
            TextSignal::Start(d) => SignalSeen::Matched(d),
            _ => SignalSeen::Unmatched,
        };
        let request = StartRequest {
            source: req.src.ip(),
            credentials,
            signal,
            authenticated_at: now,
            audit_available: self.audit.healthy(),
        };
        let (_, order) = self
            .finish_decision(req.trunk, req.src, req.tcp, request, now)
            .await;
        let r = if authenticated {
            // RFC 3428 §7: 202 once accepted; the same answer whatever the gate decided.
            reply(202, "Accepted", vec![])
        } else {
            reply(403, "Forbidden", vec![])
        };
        (r, order)
    }
}

/// The URI the digest must be computed over. A PBX in front of the gate rewrites the
/// Request-URI (registrar lookup turns `sip:gate-admin@pbx` into our Contact), while the
/// client computed its response over the URI it sent (RFC 3261 §22.4). Accept the
/// credential's URI when it names the same user as the Request-URI we received; the digest
/// still binds the response to that URI, so it cannot be replayed to another target user.
fn digest_uri(authorization: Option<&str>, received: &str) -> String {
    let user = |u: &str| -> Option<String> {
        let rest = u.split_once(':')?.1;
        Some(rest.split_once('@')?.0.to_string())
    };
    let claimed = authorization
        .and_then(|a| crate::sip::digest::parse_authorization(a).ok())
        .map(|a| a.uri);
    match claimed {
        Some(uri) if uri != received && user(&uri).is_some() && user(&uri) == user(received) => uri,
        _ => received.to_string(),
    }
}

/// The answer to a request the route does not admit (`routes.*.otherwise`): the configured
/// 4xx/6xx, or a 302 to the configured URI (RFC 3261 §21.3.3). MESSAGEs and calls get the same.
pub fn otherwise_answer(otherwise: &Otherwise) -> (u16, &'static str, Extras<'static>) {
    match otherwise {
        Otherwise::Reject(code) => (*code, reason_for(*code), Extras::default()),
        Otherwise::Redirect(uri) => (
            302,
            "Moved Temporarily",
            Extras {
                headers: vec![("Contact", format!("<{uri}>"))],
                body: None,
            },
        ),
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        603 => "Decline",
        _ => "Rejected",
    }
}

fn wall_now() -> WallTime {
    WallTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

fn pattern(p: &config::SignalPattern) -> String {
    match &p.suffix {
        Some(suffix) => format!("{}{{digit}}{}", p.prefix, suffix),
        None => p.prefix.clone(),
    }
}

/// The gate's policy values from the dialplan (config has validated them already; the
/// gate validates again by parsing, so a policy that passed both cannot be invalid).
pub fn policy_input(d: &Dialplan) -> PolicyInput {
    PolicyInput {
        realm: d.security.realm.clone(),
        admins: d
            .admins
            .iter()
            .map(|a| AdminInput {
                digit: a.digit.value(),
                id: a.id.clone(),
                name: a.name.clone(),
                numbers: a.numbers.iter().map(|n| n.as_str().to_string()).collect(),
                pin_hash: Some(a.pin.expose().to_string()),
                ha1_realm: Some(a.digest.realm.clone()),
                ha1_md5: a.digest.ha1_md5.as_ref().map(|s| s.expose().to_string()),
                ha1_sha256: a.digest.ha1_sha256.as_ref().map(|s| s.expose().to_string()),
            })
            .collect(),
        signal: SignalInput {
            text: pattern(&d.signal.text),
            dtmf: pattern(&d.signal.dtmf),
            window_s: u64::from(d.signal.window_s),
            separate_digit: d.signal.separate_digit,
        },
        callback: CallbackInput {
            delay_s: u64::from(d.callback.delay_ms.div_ceil(1000)),
            ring_timeout_s: u64::from(d.callback.ring_timeout_s),
            max_per_admin_per_hour: u64::from(d.callback.max_per_admin_per_hour),
            on_diversion: match d.callback.on_diversion {
                config::OnDiversion::Abort => OnDiversion::Abort,
                config::OnDiversion::Continue => OnDiversion::Continue,
            },
        },
        security: SecurityInput {
            tries_per_call: u64::from(d.security.tries_per_call),
            max_failures: u64::from(d.security.max_failures),
            failure_window_s: u64::from(d.security.failure_window_s),
            lock_s: u64::from(d.security.lock_s),
            per_source_max_failures: u64::from(d.security.per_source_max_failures),
            nonce_ttl_s: u64::from(d.security.nonce_ttl_s),
        },
        digest_algorithms: d.security.digest_algorithms.clone(),
    }
}
