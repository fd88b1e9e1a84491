//! The built-in maintenance console carried by the callback modem (issue 5 point 5; DESIGN.md
//! "The flow", last step; JP H11-053315 claim 1, "maintenance ... after the call-back").
//!
//! Once the callback's modem has carrier, the data stream goes to the target the dialplan
//! names. For `console` this module is the whole session: a login prompt that re-authenticates
//! the administrator (the callback leg is never trusted on a bare answer), then a small command
//! set (`help`, `status`, `audit [N]`, `quit`/`exit`). For `tcp:HOST:PORT`, [`bridge`] is the
//! byte pump.
//!
//! Sans-IO: bytes in ([`Console::push_rx`]), bytes out ([`Console::fill_tx`]), `now: Instant`
//! passed in, timers through [`Console::poll_timeout`] / [`Console::handle_timeout`], and
//! everything the runtime must do through [`Console::poll_event`]. No clock reads, no sockets,
//! no argon2 here: the PIN check is slow, so the console asks for it with
//! [`ConsoleEvent::VerifyLogin`] and the runtime answers [`Console::login_result`] after
//! `gate::pin::verify_pin`. The answer is the administrator `verify_pin` returned, not a bool:
//! the console itself compares it with the administrator the callback was placed for, so a
//! different administrator's valid credentials fail and no runtime path can skip that check.
//! Every failure reads `Login incorrect`, whatever failed; after `login_tries` failures the
//! console hangs up (`Reason::ReauthFailed`).
//!
//! Status and audit text come the same way: the console emits [`ConsoleEvent::StatusRequest`]
//! or [`ConsoleEvent::AuditRequest`] and the runtime answers [`Console::provide_status`] or
//! [`Console::provide_audit`]. Events rather than a `StatusSource` trait because the runtime's
//! trunk and session state lives in other tasks; an event lets it gather the text
//! asynchronously without the console holding a reference into runtime state.
//!
//! Memory is bounded whatever the peer sends or the line accepts:
//! - the output buffer never holds more than [`TX_BUFFER_CAP`] bytes; longer output (status,
//!   audit listings) waits as at most [`STREAM_LINES_MAX`] lines of at most [`LINE_OUT_MAX`]
//!   bytes and is rendered into the buffer only as the modem takes bytes (back-pressure: a
//!   300 bit/s line cannot be flooded);
//! - received bytes wait in at most [`RX_BUFFER_CAP`] bytes (excess is dropped and counted) and
//!   are processed only when the previous reaction has been rendered, so type-ahead cannot make
//!   output pile up;
//! - an input line holds at most [`LINE_IN_MAX`] characters.
//!
//! Text from the runtime is sanitised to printable ASCII before it reaches the line, so an
//! audit field cannot carry terminal escape sequences to the administrator's terminal.

pub mod bridge;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::Modem;
use crate::gate::audit::Reason;
use crate::gate::policy::AdminId;
use crate::gate::Secret;

/// Most bytes the output buffer holds (what [`Console::buffered`] reports).
pub const TX_BUFFER_CAP: usize = 256;
/// Longest output line, CRLF included; longer text from the runtime is cut.
pub const LINE_OUT_MAX: usize = 128;
/// Most output lines waiting to be rendered (a status text or audit listing is cut here).
pub const STREAM_LINES_MAX: usize = 256;
/// Most received bytes waiting to be processed; more are dropped.
pub const RX_BUFFER_CAP: usize = 256;
/// Longest input line (login ID, PIN, command); further characters are ignored.
pub const LINE_IN_MAX: usize = 64;
/// Audit lines listed by `audit` without an argument.
pub const AUDIT_DEFAULT: usize = 10;
/// Most audit lines one `audit N` may list.
pub const AUDIT_MAX: usize = 100;
/// How long an orderly end waits for the line to take the remaining output before hanging up
/// anyway (about 600 bytes at 300 bit/s).
pub const DRAIN_MAX: Duration = Duration::from_secs(20);

const PROMPT: &str = "dialback> ";
const LOGIN_PROMPT: &str = "login: ";
const PIN_PROMPT: &str = "PIN: ";
const LOGIN_INCORRECT: &str = "Login incorrect";
const UNKNOWN_COMMAND: &str = "unknown command; type help";
const AUDIT_USAGE: &str = "usage: audit [N]   (N from 1 to 100)";
const HELP: &[&str] = &[
    "commands:",
    "  status      trunks and sessions",
    "  audit [N]   last N audit events (default 10, at most 100)",
    "  help        this text",
    "  quit, exit  end the session and hang up",
];

/// What the runtime sets up a console with (from `config::Modem` and the callback).
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The administrator the callback was placed for; only this administrator may log in.
    pub expected_admin: AdminId,
    /// Failed logins before the console hangs up (`Modem::login_tries`); 0 is taken as 1.
    pub login_tries: u32,
    /// Hang up after this long without a received byte (`Modem::idle_s`).
    pub idle: Duration,
    /// Hang up this long after the console started (`Modem::max_s`).
    pub max: Duration,
    /// Printed before the first login prompt; sanitised and cut like any output line.
    pub banner: String,
}

impl ConsoleConfig {
    /// The dialplan's modem limits for a callback placed for `expected_admin`.
    pub fn from_modem(modem: &Modem, expected_admin: AdminId, banner: String) -> Self {
        ConsoleConfig {
            expected_admin,
            login_tries: modem.login_tries,
            idle: Duration::from_secs(u64::from(modem.idle_s)),
            max: Duration::from_secs(u64::from(modem.max_s)),
            banner,
        }
    }
}

/// What the runtime must act on, drained with [`Console::poll_event`]. `Debug` redacts the
/// login ID as well as the PIN: a keyed ID can be a mistyped PIN (as in `gate::audit`).
#[derive(Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Run `verify_pin(policy, &id, &pin)` off the reactor and answer
    /// [`Console::login_result`] with the administrator it returns. Never log `id`.
    VerifyLogin { id: String, pin: Secret },
    /// Answer [`Console::provide_status`] with the trunk and session status text.
    StatusRequest,
    /// Answer [`Console::provide_audit`] with the last `last` audit lines, oldest first.
    AuditRequest { last: usize },
    /// A login on the callback failed (`attempt` counts from 1): audit `EventCode::AuthFail`
    /// with `Reason::BadCredentials`. What failed (ID, PIN, wrong administrator) is not told,
    /// to the peer or here.
    LoginFailed { attempt: u32 },
    /// The administrator logged in: audit `EventCode::SessionStart`.
    SessionStarted { admin: AdminId },
    /// Output is drained (or [`DRAIN_MAX`] passed): hang up the callback call. With
    /// `ReauthFailed` no session started, so no [`ConsoleEvent::Ended`] follows: the runtime
    /// audits the failed re-authentication from this event.
    Hangup { reason: Reason },
    /// A session that started has ended: audit `EventCode::SessionEnd` with `reason`.
    Ended { reason: Reason },
}

/// Misuse of the console API by the runtime (answers nobody asked for). The peer's input is
/// never an error: it is edited, capped or dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ConsoleError {
    #[error("{answer} given while the console waits for {waiting}")]
    Unexpected {
        answer: &'static str,
        waiting: &'static str,
    },
}

/// The console of one callback session. `Debug` shows sizes and state only: the line being
/// edited and the waiting input may hold a PIN.
pub struct Console {
    cfg: ConsoleConfig,
    state: State,
    /// Rendered bytes the line has not taken yet; never more than [`TX_BUFFER_CAP`].
    tx: VecDeque<u8>,
    /// Output lines waiting for room in `tx`, each at most [`LINE_OUT_MAX`] bytes.
    stream: VecDeque<Vec<u8>>,
    rx: VecDeque<u8>,
    rx_dropped: u64,
    /// The input line being edited.
    line: String,
    /// The previous byte was CR, so an LF right after it ends nothing (CRLF is one line end).
    after_cr: bool,
    failures: u32,
    started: bool,
    events: VecDeque<ConsoleEvent>,
    /// When the last byte was received (the idle timer counts from here).
    last_rx: Instant,
    /// The latest `now` any input brought; the drain deadline of a `quit` processed from
    /// [`Console::fill_tx`] (which has no `now`) counts from here.
    latest: Instant,
    max_deadline: Instant,
    /// After the login, hand the line over (a `tcp:` target) instead of the command set.
    handover: bool,
}

enum State {
    LoginId,
    /// The ID typed; the PIN is being typed (never echoed).
    LoginPin {
        id: String,
    },
    AwaitingVerify,
    /// Login-only console ([`Console::login_only`]): logged in, the line belongs to the
    /// runtime's target once the welcome line is out.
    HandedOver,
    Command,
    AwaitingStatus,
    AwaitingAudit {
        last: usize,
    },
    /// Orderly end: no more input; hang up once the output is drained or at `deadline`.
    Closing {
        reason: Reason,
        deadline: Instant,
    },
    Closed,
}

impl Console {
    pub fn new(cfg: ConsoleConfig, now: Instant) -> Self {
        let max_deadline = later(now, cfg.max);
        let mut console = Console {
            cfg,
            state: State::LoginId,
            tx: VecDeque::with_capacity(TX_BUFFER_CAP),
            stream: VecDeque::new(),
            rx: VecDeque::with_capacity(RX_BUFFER_CAP),
            rx_dropped: 0,
            line: String::new(),
            after_cr: false,
            failures: 0,
            started: false,
            events: VecDeque::new(),
            last_rx: now,
            latest: now,
            max_deadline,
            handover: false,
        };
        let banner = console.cfg.banner.clone();
        for l in banner.lines() {
            console.say(l);
        }
        console.write(LOGIN_PROMPT);
        console.pump();
        console
    }

    /// A console that only re-authenticates: the same banner, prompts, checks, failure count
    /// and audit events as [`Console::new`], but a successful login prints the welcome line
    /// and then hands the line over ([`Console::is_handed_over`]) instead of offering
    /// commands. For the `tcp:` target, whose session is the [`bridge`]: the callback leg is
    /// never trusted on a bare answer, whatever the data goes to.
    pub fn login_only(cfg: ConsoleConfig, now: Instant) -> Self {
        let mut console = Console::new(cfg, now);
        console.handover = true;
        console
    }

    /// Logged in and every byte of the welcome taken: the runtime may start its target.
    /// Input typed after the PIN and before this is dropped.
    pub fn is_handed_over(&self) -> bool {
        matches!(self.state, State::HandedOver) && self.tx.is_empty() && self.stream.is_empty()
    }

    /// Bytes received from the modem. Any byte resets the idle timer; bytes beyond
    /// [`RX_BUFFER_CAP`] waiting are dropped.
    pub fn push_rx(&mut self, now: Instant, bytes: &[u8]) {
        if matches!(self.state, State::Closing { .. } | State::Closed) {
            return;
        }
        self.observe(now);
        if !bytes.is_empty() {
            self.last_rx = self.latest;
        }
        for &b in bytes {
            if self.rx.len() < RX_BUFFER_CAP {
                self.rx.push_back(b);
            } else {
                self.rx_dropped = self.rx_dropped.saturating_add(1);
            }
        }
        self.pump();
    }

    /// Copies up to `out.len()` bytes for the modem into `out`; returns how many. Output is
    /// produced only as fast as it is taken.
    pub fn fill_tx(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(b) = self.tx.pop_front() else {
                // Render more waiting output (and react to waiting input) into the room made.
                self.pump();
                if self.tx.is_empty() {
                    break;
                }
                continue;
            };
            // `n < out.len()` is the loop condition, so the index is in bounds.
            out[n] = b;
            n += 1;
        }
        self.pump();
        n
    }

    /// [`Console::fill_tx`] into a new vector of at most `max` bytes.
    pub fn poll_tx(&mut self, max: usize) -> Vec<u8> {
        let mut buf = vec![0u8; max.min(TX_BUFFER_CAP + STREAM_LINES_MAX * LINE_OUT_MAX)];
        let n = self.fill_tx(&mut buf);
        buf.truncate(n);
        buf
    }

    pub fn poll_event(&mut self) -> Option<ConsoleEvent> {
        self.events.pop_front()
    }

    /// The next instant [`Console::handle_timeout`] must be called at; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed => None,
            State::Closing { deadline, .. } => Some(deadline),
            _ => Some(self.idle_deadline().min(self.max_deadline)),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        match self.state {
            State::Closed => {}
            State::Closing { reason, deadline } => {
                if now >= deadline {
                    // The line would not take the rest; hang up without it.
                    self.tx.clear();
                    self.stream.clear();
                    self.finish(reason);
                }
            }
            _ => {
                if now >= self.max_deadline {
                    self.close(
                        now,
                        Reason::DurationLimit,
                        "session time limit reached",
                        true,
                    );
                } else if now >= self.idle_deadline() {
                    self.close(now, Reason::IdleTimeout, "idle timeout", true);
                }
            }
        }
    }

    /// The runtime's answer to [`ConsoleEvent::VerifyLogin`]: the administrator `verify_pin`
    /// returned. The login succeeds only if it is the administrator this callback was placed
    /// for; the check is here so that no runtime path can forget it.
    pub fn login_result(
        &mut self,
        now: Instant,
        verified: Option<AdminId>,
    ) -> Result<(), ConsoleError> {
        if !matches!(self.state, State::AwaitingVerify) {
            return Err(self.unexpected("login result"));
        }
        self.observe(now);
        match verified {
            Some(admin) if admin == self.cfg.expected_admin => {
                self.started = true;
                self.events
                    .push_back(ConsoleEvent::SessionStarted { admin });
                self.say(&format!("welcome, {}", self.cfg.expected_admin));
                if self.handover {
                    self.rx.clear();
                    self.state = State::HandedOver;
                } else {
                    self.say("type help for commands");
                    self.write(PROMPT);
                    self.state = State::Command;
                }
            }
            // Unknown ID, wrong PIN and another administrator's valid credentials all read
            // the same to the peer.
            _ => {
                self.failures = self.failures.saturating_add(1);
                self.events.push_back(ConsoleEvent::LoginFailed {
                    attempt: self.failures,
                });
                self.say(LOGIN_INCORRECT);
                if self.failures >= self.cfg.login_tries.max(1) {
                    self.close(
                        now,
                        Reason::ReauthFailed,
                        "too many failures; goodbye",
                        false,
                    );
                    return Ok(());
                }
                self.write(LOGIN_PROMPT);
                self.state = State::LoginId;
            }
        }
        self.pump();
        Ok(())
    }

    /// The runtime's answer to [`ConsoleEvent::StatusRequest`]. Lines beyond
    /// [`STREAM_LINES_MAX`] are cut; each line is sanitised and cut at [`LINE_OUT_MAX`].
    pub fn provide_status(&mut self, text: &str) -> Result<(), ConsoleError> {
        if !matches!(self.state, State::AwaitingStatus) {
            return Err(self.unexpected("status"));
        }
        for l in text.lines().take(STREAM_LINES_MAX - 1) {
            self.say(l);
        }
        self.write(PROMPT);
        self.state = State::Command;
        self.pump();
        Ok(())
    }

    /// The runtime's answer to [`ConsoleEvent::AuditRequest`], oldest first. Only the last
    /// `last` lines given are kept, however many come.
    pub fn provide_audit<I, S>(&mut self, lines: I) -> Result<(), ConsoleError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let State::AwaitingAudit { last } = self.state else {
            return Err(self.unexpected("audit lines"));
        };
        let mut kept: VecDeque<Vec<u8>> = VecDeque::with_capacity(last);
        for l in lines {
            if kept.len() == last {
                kept.pop_front();
            }
            kept.push_back(render_line(l.as_ref()));
        }
        if kept.is_empty() {
            self.say("no audit events");
        }
        self.stream.extend(kept);
        self.write(PROMPT);
        self.state = State::Command;
        self.pump();
        Ok(())
    }

    /// The call or the carrier is gone (`CarrierLost`), or the runtime shuts down
    /// (`Shutdown`): close at once, nothing more is sent.
    pub fn end(&mut self, reason: Reason) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.tx.clear();
        self.stream.clear();
        self.rx.clear();
        self.state = State::Closed;
        if self.started {
            self.events.push_back(ConsoleEvent::Ended { reason });
        }
    }

    /// Bytes rendered and not yet taken by the line; at most [`TX_BUFFER_CAP`].
    pub fn buffered(&self) -> usize {
        self.tx.len()
    }

    /// Output lines waiting to be rendered; at most [`STREAM_LINES_MAX`] plus the few lines
    /// of one reaction.
    pub fn pending_lines(&self) -> usize {
        self.stream.len()
    }

    /// Received bytes dropped because [`RX_BUFFER_CAP`] were already waiting.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    // --- helpers ---

    /// Renders waiting lines into `tx` while they fit, then reacts to waiting input while
    /// nothing is left to render, then ends an orderly close once everything is out.
    fn pump(&mut self) {
        loop {
            while let Some(front) = self.stream.front() {
                if self.tx.len() + front.len() > TX_BUFFER_CAP {
                    break;
                }
                if let Some(l) = self.stream.pop_front() {
                    self.tx.extend(l);
                }
            }
            if !self.stream.is_empty() || !self.accepts_input() {
                break;
            }
            let Some(b) = self.rx.pop_front() else {
                break;
            };
            self.on_byte(b);
        }
        if let State::Closing { reason, .. } = self.state {
            if self.tx.is_empty() && self.stream.is_empty() {
                self.finish(reason);
            }
        }
    }

    fn accepts_input(&self) -> bool {
        matches!(
            self.state,
            State::LoginId | State::LoginPin { .. } | State::Command
        )
    }

    /// Line editing: printable ASCII is kept (up to [`LINE_IN_MAX`]) and echoed except in
    /// the PIN; BS and DEL erase; CR, LF and CRLF end a line; anything else is ignored.
    fn on_byte(&mut self, b: u8) {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        let echo = !matches!(self.state, State::LoginPin { .. });
        match b {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => {
                let line = std::mem::take(&mut self.line);
                self.write("\r\n");
                self.on_line(line);
            }
            0x08 | 0x7f => {
                let erased = self.line.pop().is_some();
                if erased && echo {
                    self.write("\x08 \x08");
                }
            }
            // Past the cap, characters are ignored (not echoed) like non-printables.
            0x20..=0x7e if self.line.len() < LINE_IN_MAX => {
                self.line.push(char::from(b));
                if echo {
                    self.tx_or_stream(&[b]);
                }
            }
            _ => {}
        }
    }

    fn on_line(&mut self, line: String) {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::LoginId => {
                let id = line.trim().to_owned();
                if id.is_empty() {
                    self.write(LOGIN_PROMPT);
                    self.state = State::LoginId;
                } else {
                    self.write(PIN_PROMPT);
                    self.state = State::LoginPin { id };
                }
            }
            State::LoginPin { id } => {
                self.events.push_back(ConsoleEvent::VerifyLogin {
                    id,
                    pin: Secret::new(line),
                });
                self.state = State::AwaitingVerify;
            }
            State::Command => self.on_command(&line),
            other => self.state = other,
        }
    }

    fn on_command(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let cmd = words.next();
        let arg = words.next();
        let extra = words.next().is_some();
        self.state = State::Command;
        match (cmd, arg, extra) {
            (None, _, _) => self.write(PROMPT),
            (Some("help"), None, _) => {
                for l in HELP {
                    self.say(l);
                }
                self.write(PROMPT);
            }
            (Some("status"), None, _) => {
                self.events.push_back(ConsoleEvent::StatusRequest);
                self.state = State::AwaitingStatus;
            }
            (Some("audit"), arg, false) => {
                let last = match arg {
                    None => Some(AUDIT_DEFAULT),
                    Some(a) => a
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=AUDIT_MAX).contains(n)),
                };
                match last {
                    Some(last) => {
                        self.events.push_back(ConsoleEvent::AuditRequest { last });
                        self.state = State::AwaitingAudit { last };
                    }
                    None => {
                        self.say(AUDIT_USAGE);
                        self.write(PROMPT);
                    }
                }
            }
            (Some("quit" | "exit"), None, _) => {
                // No `now` here (input may be processed later, from `fill_tx`): the drain
                // deadline counts from the latest instant the console was told.
                self.close(self.latest, Reason::Hangup, "goodbye", false);
            }
            _ => {
                self.say(UNKNOWN_COMMAND);
                self.write(PROMPT);
            }
        }
    }

    /// Starts an orderly end: waiting input is dropped, `message` is queued, and
    /// the hangup follows once the line took it (or at `now + DRAIN_MAX`).
    /// `interrupt` (a timer, not the administrator, ends the session) drops output still
    /// waiting and first ends the line the cursor is on (a prompt or half-typed input).
    fn close(&mut self, now: Instant, reason: Reason, message: &str, interrupt: bool) {
        self.rx.clear();
        self.line.clear();
        if interrupt {
            self.stream.clear();
            self.say("");
        }
        self.say(message);
        self.state = State::Closing {
            reason,
            deadline: later(now, DRAIN_MAX),
        };
    }

    /// Keeps `latest` monotonic even if the runtime passes an older `now`.
    fn observe(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
    }

    fn idle_deadline(&self) -> Instant {
        later(self.last_rx, self.cfg.idle)
    }

    fn finish(&mut self, reason: Reason) {
        self.state = State::Closed;
        self.rx.clear();
        self.events.push_back(ConsoleEvent::Hangup { reason });
        if self.started {
            self.events.push_back(ConsoleEvent::Ended { reason });
        }
    }

    /// Queues `text` and CRLF as one output line.
    fn say(&mut self, text: &str) {
        if self.stream.len() < STREAM_LINES_MAX {
            self.stream.push_back(render_line(text));
        }
    }

    /// Queues `text` (a prompt or control sequence of our own) without a line end.
    fn write(&mut self, text: &str) {
        self.tx_or_stream(text.as_bytes());
    }

    fn tx_or_stream(&mut self, bytes: &[u8]) {
        if self.stream.is_empty() && self.tx.len() + bytes.len() <= TX_BUFFER_CAP {
            self.tx.extend(bytes);
        } else if self.stream.len() < STREAM_LINES_MAX + 8 {
            // A reaction's own few chunks may exceed the line cap by a bounded amount.
            self.stream.push_back(bytes.to_vec());
        }
    }

    fn unexpected(&self, answer: &'static str) -> ConsoleError {
        let waiting = match self.state {
            State::LoginId | State::LoginPin { .. } => "login input",
            State::AwaitingVerify => "a login result",
            State::HandedOver => "nothing (handed over)",
            State::Command => "a command",
            State::AwaitingStatus => "status",
            State::AwaitingAudit { .. } => "audit lines",
            State::Closing { .. } | State::Closed => "nothing (closing)",
        };
        ConsoleError::Unexpected { answer, waiting }
    }
}

impl fmt::Debug for ConsoleEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsoleEvent::VerifyLogin { .. } => {
                f.write_str("VerifyLogin { id: REDACTED, pin: REDACTED }")
            }
            ConsoleEvent::StatusRequest => f.write_str("StatusRequest"),
            ConsoleEvent::LoginFailed { attempt } => {
                write!(f, "LoginFailed {{ attempt: {attempt} }}")
            }
            ConsoleEvent::AuditRequest { last } => write!(f, "AuditRequest {{ last: {last} }}"),
            ConsoleEvent::SessionStarted { admin } => {
                write!(f, "SessionStarted {{ admin: {admin} }}")
            }
            ConsoleEvent::Hangup { reason } => write!(f, "Hangup {{ reason: {reason:?} }}"),
            ConsoleEvent::Ended { reason } => write!(f, "Ended {{ reason: {reason:?} }}"),
        }
    }
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::LoginId => "LoginId",
            State::LoginPin { .. } => "LoginPin",
            State::AwaitingVerify => "AwaitingVerify",
            State::HandedOver => "HandedOver",
            State::Command => "Command",
            State::AwaitingStatus => "AwaitingStatus",
            State::AwaitingAudit { .. } => "AwaitingAudit",
            State::Closing { .. } => "Closing",
            State::Closed => "Closed",
        }
    }
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("state", &self.state.name())
            .field("expected_admin", &self.cfg.expected_admin)
            .field("failures", &self.failures)
            .field("buffered", &self.tx.len())
            .field("pending_lines", &self.stream.len())
            .field("rx_waiting", &self.rx.len())
            .field("rx_dropped", &self.rx_dropped)
            .field("line_len", &self.line.len())
            .finish_non_exhaustive()
    }
}

/// `now + d`, saturating at a far future instead of panicking on overflow (a huge configured
/// limit then means "never").
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

/// `text` as one output line: printable ASCII only (tab becomes a space, other bytes are
/// dropped), cut so that with CRLF it is at most [`LINE_OUT_MAX`] bytes.
fn render_line(text: &str) -> Vec<u8> {
    let mut out: Vec<u8> = text
        .bytes()
        .map(|b| if b == b'\t' { b' ' } else { b })
        .filter(|b| (0x20..=0x7e).contains(b))
        .take(LINE_OUT_MAX - 2)
        .collect();
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ADMIN: &str = "1001";

    fn cfg(tries: u32) -> ConsoleConfig {
        ConsoleConfig {
            expected_admin: AdminId::parse(ADMIN).unwrap(),
            login_tries: tries,
            idle: Duration::from_secs(300),
            max: Duration::from_secs(3600),
            banner: "dialback maintenance".to_owned(),
        }
    }

    fn admin(id: &str) -> AdminId {
        AdminId::parse(id).unwrap()
    }

    /// Everything the console will give, taken in `chunk`-byte calls.
    fn drain(c: &mut Console, chunk: usize) -> String {
        let mut all = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = c.fill_tx(&mut buf);
            assert!(c.buffered() <= TX_BUFFER_CAP);
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(all).unwrap()
    }

    fn events(c: &mut Console) -> Vec<ConsoleEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Types ID and PIN, answers the verify request with `verified`; returns all output.
    fn login(
        c: &mut Console,
        t: Instant,
        id: &str,
        pin: &str,
        verified: Option<AdminId>,
    ) -> String {
        let mut out = drain(c, 64);
        c.push_rx(t, format!("{id}\r\n{pin}\r\n").as_bytes());
        out += &drain(c, 64);
        // Earlier events (LoginFailed) stay queued for the test to check.
        assert_eq!(
            c.events.pop_back(),
            Some(ConsoleEvent::VerifyLogin {
                id: id.to_owned(),
                pin: Secret::new(pin)
            })
        );
        c.login_result(t, verified).unwrap();
        out += &drain(c, 64);
        out
    }

    #[test]
    fn login_only_console_hands_the_line_over_after_the_welcome_and_offers_no_commands() {
        let t0 = Instant::now();
        let mut c = Console::login_only(cfg(3), t0);
        assert!(!c.is_handed_over());
        let out = login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        assert!(out.ends_with("PIN: \r\nwelcome, 1001\r\n"), "{out:?}");
        assert!(!out.contains("dialback> "), "{out:?}");
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::SessionStarted {
                admin: admin(ADMIN)
            }]
        );
        assert!(c.is_handed_over());
        c.push_rx(t0, b"status\r");
        assert_eq!(drain(&mut c, 64), "", "input now belongs to the target");
        assert_eq!(events(&mut c), vec![]);
    }

    #[test]
    fn login_only_console_still_hangs_up_after_the_failed_tries() {
        let t0 = Instant::now();
        let mut c = Console::login_only(cfg(1), t0);
        let out = login(&mut c, t0, ADMIN, "0000", None);
        assert!(out.contains("Login incorrect"), "{out:?}");
        assert!(!c.is_handed_over());
        let reason = Reason::ReauthFailed;
        assert_eq!(
            events(&mut c),
            vec![
                ConsoleEvent::LoginFailed { attempt: 1 },
                ConsoleEvent::Hangup { reason }
            ]
        );
    }

    #[test]
    fn login_then_status_then_quit_hangs_up_after_the_goodbye() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        let out = login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        assert!(out.starts_with("dialback maintenance\r\nlogin: 1001\r\nPIN: \r\n"));
        assert!(out.ends_with("welcome, 1001\r\ntype help for commands\r\ndialback> "));
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::SessionStarted {
                admin: admin(ADMIN)
            }]
        );

        c.push_rx(t0, b"status\r");
        assert_eq!(events(&mut c), vec![ConsoleEvent::StatusRequest]);
        c.provide_status("trunk user: registered\ntrunk admin: registered\nsessions: 1")
            .unwrap();
        assert_eq!(
            drain(&mut c, 64),
            "status\r\ntrunk user: registered\r\ntrunk admin: registered\r\nsessions: 1\r\ndialback> "
        );

        c.push_rx(t0, b"quit\n");
        assert_eq!(
            events(&mut c),
            vec![],
            "no hangup before the goodbye is sent"
        );
        assert_eq!(drain(&mut c, 64), "quit\r\ngoodbye\r\n");
        let reason = Reason::Hangup;
        assert_eq!(
            events(&mut c),
            vec![
                ConsoleEvent::Hangup { reason },
                ConsoleEvent::Ended { reason }
            ]
        );
        assert!(c.is_closed());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn wrong_pin_three_times_hangs_up_with_the_same_message_each_time() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        let mut out = String::new();
        for _ in 0..3 {
            out += &login(&mut c, t0, ADMIN, "0000", None);
        }
        assert_eq!(out.matches("Login incorrect\r\n").count(), 3);
        assert!(out.ends_with("Login incorrect\r\ntoo many failures; goodbye\r\n"));
        let evs = events(&mut c);
        assert_eq!(
            evs,
            vec![
                ConsoleEvent::LoginFailed { attempt: 1 },
                ConsoleEvent::LoginFailed { attempt: 2 },
                ConsoleEvent::LoginFailed { attempt: 3 },
                ConsoleEvent::Hangup {
                    reason: Reason::ReauthFailed
                }
            ],
            "no Ended: no session started"
        );
        c.push_rx(t0, b"1001\r\n4321\r\n");
        assert_eq!(events(&mut c), vec![]);
        assert_eq!(drain(&mut c, 64), "");
    }

    #[test]
    fn another_administrators_valid_credentials_are_refused_like_a_wrong_pin() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        let other = login(&mut c, t0, "2002", "5555", Some(admin("2002")));
        let wrong = login(&mut c, t0, ADMIN, "0000", None);
        assert!(other.ends_with("Login incorrect\r\nlogin: "));
        assert_eq!(
            other["dialback maintenance\r\nlogin: ".len()..],
            wrong.replace(ADMIN, "2002")
        );
        assert_eq!(
            events(&mut c),
            vec![
                ConsoleEvent::LoginFailed { attempt: 1 },
                ConsoleEvent::LoginFailed { attempt: 2 }
            ],
            "the runtime learns no more than the peer about what failed"
        );
        assert!(login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN))).contains("welcome"));
    }

    #[test]
    fn real_verify_pin_refuses_a_valid_other_admin_and_admits_the_called_one() {
        use crate::gate::pin::verify_pin;
        // Both 1001 and 1002 have PIN 4321 in the test policy; the callback is for 1001.
        let policy = crate::gate::policy::tests::policy();
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        let verify = |c: &mut Console, typed: &[u8]| {
            c.push_rx(t0, typed);
            let Some(ConsoleEvent::VerifyLogin { id, pin }) = c.poll_event() else {
                panic!("no verify request");
            };
            c.login_result(t0, verify_pin(&policy, &id, &pin)).unwrap();
            drain(c, 64)
        };
        drain(&mut c, 64);
        assert!(verify(&mut c, b"1002\r4321\r").ends_with("Login incorrect\r\nlogin: "));
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::LoginFailed { attempt: 1 }]
        );
        assert!(verify(&mut c, b"1001\r4321\r").contains("welcome, 1001"));
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::SessionStarted {
                admin: admin(ADMIN)
            }]
        );
    }

    #[test]
    fn config_comes_from_the_dialplan_modem_limits() {
        let modem = crate::config::Modem {
            modulations: Vec::new(),
            target: crate::config::ModemTarget::Console,
            tx_level_dbm0: -12,
            idle_s: 300,
            max_s: 3600,
            login_tries: 3,
            connect_timeout_s: 20,
        };
        let c = ConsoleConfig::from_modem(&modem, admin(ADMIN), "hi".into());
        assert_eq!(c.idle, Duration::from_secs(300));
        assert_eq!(c.max, Duration::from_secs(3600));
        assert_eq!(c.login_tries, 3);
    }

    #[test]
    fn pin_is_never_echoed_even_with_editing() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        c.push_rx(t0, b"1001\r\n98x\x7f7\x086543\r\n");
        let out = drain(&mut c, 7);
        assert_eq!(out, "dialback maintenance\r\nlogin: 1001\r\nPIN: \r\n");
        for digit in ["9", "8", "x", "6", "5", "4", "3"] {
            assert!(!out["dialback maintenance\r\nlogin: 1001".len()..].contains(digit));
        }
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::VerifyLogin {
                id: "1001".to_owned(),
                pin: Secret::new("986543")
            }]
        );
    }

    #[test]
    fn line_editing_handles_backspace_del_crlf_and_the_length_cap() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        events(&mut c);
        // "stx" + BS + DEL -> "s", then "tatus"; a bell and a high byte are ignored; CRLF is one
        // line end, so the LF does not give an empty line (a second prompt).
        c.push_rx(t0, b"stx\x08\x7ftat\x07\xffus\r");
        c.push_rx(t0, b"\n");
        assert_eq!(drain(&mut c, 64), "stx\x08 \x08\x08 \x08tatus\r\n");
        assert_eq!(events(&mut c), vec![ConsoleEvent::StatusRequest]);
        c.provide_status("ok").unwrap();
        drain(&mut c, 64);

        let long = "a".repeat(200);
        c.push_rx(t0, long.as_bytes());
        c.push_rx(t0, b"\r\n");
        let out = drain(&mut c, 64);
        assert_eq!(
            out,
            format!(
                "{}\r\n{UNKNOWN_COMMAND}\r\n{PROMPT}",
                "a".repeat(LINE_IN_MAX)
            )
        );
    }

    #[test]
    fn help_unknown_and_bad_audit_arguments_answer_and_prompt_again() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        events(&mut c);
        c.push_rx(
            t0,
            b"help\r\nfrobnicate\r\naudit 0\r\naudit x\r\naudit 1 2\r\n\r\n",
        );
        let out = drain(&mut c, 13);
        assert!(out.starts_with("help\r\ncommands:\r\n"));
        assert_eq!(
            out.matches(UNKNOWN_COMMAND).count(),
            2,
            "frobnicate, audit 1 2"
        );
        assert_eq!(out.matches(AUDIT_USAGE).count(), 2, "audit 0, audit x");
        assert_eq!(out.matches(PROMPT).count(), 6);
        assert_eq!(events(&mut c), vec![]);
    }

    #[test]
    fn long_audit_listing_streams_in_order_through_a_ten_byte_budget() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        events(&mut c);
        c.push_rx(t0, b"audit 100\r\n");
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::AuditRequest { last: 100 }]
        );
        // The runtime gives more than asked; only the last 100 are listed.
        let lines: Vec<String> = (0..150)
            .map(|i| {
                format!(
                    "{{\"event\":\"gate.allow\",\"seq\":{i:04},\"pad\":\"{}\"}}",
                    "p".repeat(60)
                )
            })
            .collect();
        c.provide_audit(&lines).unwrap();
        assert!(c.buffered() <= TX_BUFFER_CAP);
        let out = drain(&mut c, 10);
        let expected: String = lines[50..].iter().map(|l| format!("{l}\r\n")).collect();
        assert_eq!(out, format!("audit 100\r\n{expected}{PROMPT}"));
    }

    #[test]
    fn audit_lines_are_sanitised_and_cut() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        c.push_rx(t0, b"audit 2\r\n");
        drain(&mut c, 64);
        c.provide_audit(["a\x1b[2Jb\tc\u{e9}", &"z".repeat(500)])
            .unwrap();
        let out = drain(&mut c, 64);
        assert_eq!(
            out,
            format!("a[2Jb c\r\n{}\r\n{PROMPT}", "z".repeat(LINE_OUT_MAX - 2))
        );
    }

    #[test]
    fn idle_timeout_fires_on_a_fake_clock_and_input_defers_it() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        drain(&mut c, 64);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(300)));
        c.push_rx(t0 + Duration::from_secs(200), b"10");
        c.handle_timeout(t0 + Duration::from_secs(300));
        assert_eq!(events(&mut c), vec![]);
        let t = c.poll_timeout().unwrap();
        assert_eq!(t, t0 + Duration::from_secs(500));
        c.handle_timeout(t);
        assert_eq!(drain(&mut c, 64), "10\r\nidle timeout\r\n");
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::Hangup {
                reason: Reason::IdleTimeout
            }]
        );
    }

    #[test]
    fn duration_limit_ends_a_busy_session_and_a_stuck_line_is_cut_after_the_drain_limit() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        events(&mut c);
        let mut t = t0;
        while c.poll_timeout() != Some(t0 + Duration::from_secs(3600)) {
            t += Duration::from_secs(100);
            c.push_rx(t, b"help\r");
            drain(&mut c, 1000);
        }
        c.handle_timeout(t0 + Duration::from_secs(3600));
        // Nobody takes the output: the hangup still comes after DRAIN_MAX.
        assert_eq!(events(&mut c), vec![]);
        let deadline = c.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(3600) + DRAIN_MAX);
        c.handle_timeout(deadline);
        let reason = Reason::DurationLimit;
        assert_eq!(
            events(&mut c),
            vec![
                ConsoleEvent::Hangup { reason },
                ConsoleEvent::Ended { reason }
            ]
        );
        assert_eq!(c.buffered(), 0);
    }

    #[test]
    fn carrier_loss_ends_the_session_at_once() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        login(&mut c, t0, ADMIN, "4321", Some(admin(ADMIN)));
        events(&mut c);
        c.push_rx(t0, b"help\r\n");
        c.end(Reason::CarrierLost);
        assert_eq!(
            events(&mut c),
            vec![ConsoleEvent::Ended {
                reason: Reason::CarrierLost
            }]
        );
        assert_eq!(drain(&mut c, 64), "");
    }

    #[test]
    fn answers_nobody_asked_for_are_errors_and_change_nothing() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        assert!(c.login_result(t0, Some(admin(ADMIN))).is_err());
        assert!(c.provide_status("x").is_err());
        assert!(c.provide_audit(["x"]).is_err());
        assert_eq!(events(&mut c), vec![]);
        assert_eq!(drain(&mut c, 64), "dialback maintenance\r\nlogin: ");
    }

    #[test]
    fn type_ahead_waits_for_the_verify_answer_and_is_capped() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        c.push_rx(t0, b"1001\r4321\rhelp\r");
        c.push_rx(t0, &[b'x'; 1000]);
        assert!(c.rx_dropped() > 0);
        assert_eq!(events(&mut c).len(), 1);
        drain(&mut c, 64);
        c.login_result(t0, Some(admin(ADMIN))).unwrap();
        let out = drain(&mut c, 64);
        assert!(out.contains("dialback> help\r\ncommands:"));
    }

    #[test]
    fn debug_output_shows_neither_the_pin_being_typed_nor_the_login_id() {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        c.push_rx(t0, b"1234\r\n98765");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("1234") && !shown.contains("98765"),
            "{shown}"
        );
        c.push_rx(t0, b"\r");
        let shown = format!("{:?}", events(&mut c));
        assert!(
            !shown.contains("1234") && !shown.contains("98765"),
            "{shown}"
        );
    }

    /// A whole session (login, help, status, audit, unknown, quit) as one transcript.
    fn transcript(script: &[u8], cuts: &[usize], budget: usize) -> (String, Vec<ConsoleEvent>) {
        let t0 = Instant::now();
        let mut c = Console::new(cfg(3), t0);
        let mut out = Vec::new();
        let mut evs = Vec::new();
        let mut buf = vec![0u8; budget];
        let mut bounds: Vec<usize> = cuts.iter().map(|&i| i % (script.len() + 1)).collect();
        bounds.push(0);
        bounds.push(script.len());
        bounds.sort_unstable();
        for w in bounds.windows(2) {
            c.push_rx(t0, &script[w[0]..w[1]]);
            loop {
                let n = c.fill_tx(&mut buf);
                out.extend_from_slice(&buf[..n]);
                let mut progressed = n > 0;
                while let Some(e) = c.poll_event() {
                    progressed = true;
                    match &e {
                        ConsoleEvent::VerifyLogin { .. } => {
                            c.login_result(t0, Some(admin(ADMIN))).unwrap()
                        }
                        ConsoleEvent::StatusRequest => c.provide_status("all idle").unwrap(),
                        ConsoleEvent::AuditRequest { last } => c
                            .provide_audit((0..*last + 3).map(|i| format!("event {i}")))
                            .unwrap(),
                        _ => {}
                    }
                    evs.push(e);
                }
                if !progressed {
                    break;
                }
            }
        }
        (String::from_utf8(out).unwrap(), evs)
    }

    const SCRIPT: &[u8] =
        b"1001\r\n4321\rhelp\nstatus\r\naudit 40\rbogus\x08\x7f\r\n\naudit\r\nquit\r\n";

    proptest! {
        #[test]
        fn output_is_the_same_however_input_is_chunked_and_output_is_taken(
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            budget in 1usize..300,
        ) {
            let reference = transcript(SCRIPT, &[], 4096);
            prop_assert!(reference.0.ends_with("goodbye\r\n"));
            prop_assert_eq!(transcript(SCRIPT, &cuts, budget), reference);
        }

        #[test]
        fn no_pin_character_is_ever_written_back(
            pin in "[0-9a-z#*]{1,20}",
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
            budget in 1usize..64,
        ) {
            let mut script = b"1001\r".to_vec();
            script.extend_from_slice(pin.as_bytes());
            script.extend_from_slice(b"\r");
            let (out, evs) = transcript(&script, &cuts, budget);
            let after_id = out.split_once("PIN: ").map(|(_, rest)| rest.to_owned());
            prop_assert_eq!(after_id.as_deref(), Some("\r\nwelcome, 1001\r\ntype help for commands\r\ndialback> "));
            prop_assert_eq!(
                &evs[0],
                &ConsoleEvent::VerifyLogin { id: ADMIN.to_owned(), pin: Secret::new(&pin[..pin.len().min(LINE_IN_MAX)]) }
            );
        }

        #[test]
        fn arbitrary_input_never_panics_nor_grows_buffers_beyond_caps(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..30),
            budget in 0usize..40,
            answers in any::<u8>(),
        ) {
            let t0 = Instant::now();
            let mut c = Console::new(cfg(2), t0);
            let mut buf = vec![0u8; budget];
            for (i, chunk) in chunks.iter().enumerate() {
                let now = t0 + Duration::from_secs(i as u64 * 11);
                c.push_rx(now, chunk);
                while let Some(e) = c.poll_event() {
                    // Answer like a runtime would, with outcomes picked by the input.
                    let _ = match e {
                        ConsoleEvent::VerifyLogin { .. } => {
                            let ok = answers & (1 << (i % 8)) != 0;
                            c.login_result(now, ok.then(|| admin(ADMIN)))
                        }
                        ConsoleEvent::StatusRequest => c.provide_status(&String::from_utf8_lossy(chunk)),
                        ConsoleEvent::AuditRequest { .. } => {
                            c.provide_audit(chunk.split(|b| *b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()))
                        }
                        _ => Ok(()),
                    };
                }
                c.fill_tx(&mut buf);
                c.handle_timeout(now);
                prop_assert!(c.buffered() <= TX_BUFFER_CAP);
                prop_assert!(c.pending_lines() <= STREAM_LINES_MAX + 8);
                prop_assert!(c.rx.len() <= RX_BUFFER_CAP);
                prop_assert!(c.line.len() <= LINE_IN_MAX);
                prop_assert!(c.events.len() <= 4);
            }
        }
    }
}
