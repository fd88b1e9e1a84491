//! Start-signal matching for SIP MESSAGE bodies and the DTMF call flow (DESIGN.md steps 2–3;
//! JP H11-053315 \[0011\], \[0015\], claim 2, and \[0031\] for the separate-digit variant).
//!
//! [`match_message`] matches a MESSAGE body against the text pattern; [`MessageSignals`]
//! pairs the start signal and the digit when they come in two MESSAGEs. [`CallFlow`] is the
//! sans-IO state machine of one maintenance call: prompt, ID then `#`, PIN then `#`, then the
//! DTMF start signal (or the signal, a prompt, and the digit then `#`). Digits arrive already
//! de-duplicated from RFC 4733 events, SIP INFO or in-band detection, with `now` passed in.
//! The flow never verifies anything itself and gives no cue between steps that depends on
//! the input, so a caller learns nothing until the whole attempt is decided: it submits the
//! attempt ([`Action::Submit`]) for the runtime to verify (argon2, off the reactor) and
//! `decide`, then reports the decision back. Every failure plays the same error cue.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::decide::{Decision, SignalSeen};
use super::pin::MAX_PIN_DIGITS;
use super::policy::{AdminDigit, AdminId, Policy, SignalPattern, SignalPolicy, MAX_ID_DIGITS};
use super::{Secret, WallTime};

/// Longest MESSAGE body considered as a start signal; longer bodies never match.
pub const MAX_SIGNAL_BODY: usize = 256;
/// Most DTMF digits accepted in one call, across all tries.
pub const MAX_DIGITS_PER_CALL: usize = 128;
/// Default wait for the first digit after a prompt.
pub const FIRST_DIGIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait between digits.
pub const INTER_DIGIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on the keys of one entry (the dialplan's `media.max_digits` default).
pub const MAX_DIGITS_PER_PROMPT: usize = 32;

/// What a MESSAGE body is, as a start signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSignal {
    /// The start signal with the administrator recognition digit (\[0011\]).
    Start(AdminDigit),
    /// \[0031\] variant: the start signal alone; the digit must follow in a later MESSAGE.
    StartWithoutDigit,
    /// \[0031\] variant: the separate recognition digit.
    DigitOnly(AdminDigit),
    NoMatch,
}

/// Matches a MESSAGE body: surrounding whitespace and CRLF are trimmed, then the body must be
/// exactly the pattern (with one digit for `{digit}`, or per the separate-digit variant).
pub fn match_message(signal: &SignalPolicy, body: &[u8]) -> TextSignal {
    if body.len() > MAX_SIGNAL_BODY {
        return TextSignal::NoMatch;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return TextSignal::NoMatch;
    };
    let text = text.trim();
    let pattern = signal.text();
    if signal.separate_digit() {
        if pattern.match_without_digit(text) {
            return TextSignal::StartWithoutDigit;
        }
        let mut chars = text.chars();
        return match (chars.next().and_then(AdminDigit::from_char), chars.next()) {
            (Some(d), None) => TextSignal::DigitOnly(d),
            _ => TextSignal::NoMatch,
        };
    }
    pattern
        .match_with_digit(text)
        .map_or(TextSignal::NoMatch, TextSignal::Start)
}

/// What to do with an authenticated MESSAGE's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStep {
    /// Build the `StartRequest` with these and call `decide`.
    Decide {
        signal: SignalSeen,
        /// The authentication step the signal belongs to: this MESSAGE, or for the \[0031\]
        /// variant the earlier MESSAGE that carried the start signal.
        authenticated_at: WallTime,
    },
    /// \[0031\] variant: start signal received; answer 200 and wait for the digit MESSAGE.
    AwaitDigit,
}

/// Pairs the two MESSAGEs of the separate-digit variant (\[0031\]) per authenticated
/// administrator. At most one pending start signal per administrator of the policy, so it is
/// bounded by the policy's size. Pure: wall time is passed in.
#[derive(Debug, Clone, Default)]
pub struct MessageSignals {
    pending: BTreeMap<AdminId, WallTime>,
}

impl MessageSignals {
    pub fn new() -> Self {
        MessageSignals::default()
    }

    /// Handles the body of a MESSAGE already authenticated as `admin` (digest, never From).
    /// A digit without a pending start signal, or anything that is not a signal, is an
    /// unmatched signal and clears what was pending.
    pub fn handle(
        &mut self,
        policy: &Policy,
        admin: &AdminId,
        body: &[u8],
        now: WallTime,
    ) -> MessageStep {
        let unmatched = MessageStep::Decide {
            signal: SignalSeen::Unmatched,
            authenticated_at: now,
        };
        if policy.admin_by_id(admin.as_str()).is_none() {
            return unmatched;
        }
        match match_message(policy.signal(), body) {
            TextSignal::Start(d) => MessageStep::Decide {
                signal: SignalSeen::Matched(d),
                authenticated_at: now,
            },
            TextSignal::StartWithoutDigit => {
                self.pending.insert(admin.clone(), now);
                MessageStep::AwaitDigit
            }
            TextSignal::DigitOnly(d) => match self.pending.remove(admin) {
                Some(at) => MessageStep::Decide {
                    signal: SignalSeen::Matched(d),
                    authenticated_at: at,
                },
                None => unmatched,
            },
            TextSignal::NoMatch => {
                self.pending.remove(admin);
                unmatched
            }
        }
    }
}

/// The item a prompt asks for. It follows only from the flow's stage, never from what was
/// keyed, so it tells the caller nothing about the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The administrator ID (the call's first prompt, and again after an error).
    Id,
    Pin,
    /// The DTMF start signal.
    Signal,
    /// \[0031\] variant: the recognition digit on its own.
    Digit,
}

/// An audio cue to play. The same [`Cue::Error`] follows every kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// Enter the next item.
    Prompt(Item),
    /// Accepted: the callback follows.
    Ok,
    Error,
    Goodbye,
}

/// One complete DTMF attempt, to verify and decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfAttempt {
    /// The ID as keyed; not yet known to exist.
    pub id: String,
    pub pin: Secret,
    pub signal: SignalSeen,
    /// Time from the PIN's `#` to the end of the signal; the runtime subtracts it from the
    /// wall time to give `StartRequest::authenticated_at`.
    pub since_auth: Duration,
}

/// What the runtime must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    PlayCue(Cue),
    /// Verify the PIN (`pin::verify_pin`), call `decide`, then [`CallFlow::decided`].
    Submit(DtmfAttempt),
    /// End the call.
    Hangup,
}

/// Timing and limits of a call flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowConfig {
    pub first_digit_timeout: Duration,
    pub inter_digit_timeout: Duration,
    pub tries_per_call: u32,
    pub pattern: SignalPattern,
    pub separate_digit: bool,
    /// Most keys in one entry (ID, PIN or signal, `#` included); one more fails the try
    /// (ID/PIN) or ends the signal unmatched. The dialplan's `media.max_digits`.
    pub max_digits_per_prompt: usize,
}

impl FlowConfig {
    /// The policy's DTMF pattern and tries, with the default timeouts.
    pub fn from_policy(policy: &Policy) -> Self {
        FlowConfig {
            first_digit_timeout: FIRST_DIGIT_TIMEOUT,
            inter_digit_timeout: INTER_DIGIT_TIMEOUT,
            tries_per_call: policy.security().tries_per_call(),
            pattern: policy.signal().dtmf().clone(),
            separate_digit: policy.signal().separate_digit(),
            max_digits_per_prompt: MAX_DIGITS_PER_PROMPT,
        }
    }
}

/// Which item the flow waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Id,
    Pin,
    Signal,
    SeparateDigit,
    AwaitDecision,
    Done,
}

/// The DTMF maintenance call flow of one call.
///
/// Drive it quinn-style: feed [`handle_digit`](Self::handle_digit),
/// [`handle_timeout`](Self::handle_timeout) and [`decided`](Self::decided), drain
/// [`poll_action`](Self::poll_action), then wait until [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct CallFlow {
    cfg: FlowConfig,
    stage: Stage,
    buf: String,
    id: String,
    pin: Secret,
    pin_done_at: Option<Instant>,
    deadline: Option<Instant>,
    failures: u32,
    total_digits: usize,
    /// Keys of the current entry, `#` included.
    entry_digits: usize,
    actions: VecDeque<Action>,
}

impl CallFlow {
    /// A flow for a call answered at `now`; queues the first prompt.
    pub fn new(cfg: FlowConfig, now: Instant) -> Self {
        let mut flow = CallFlow {
            cfg,
            stage: Stage::Id,
            buf: String::new(),
            id: String::new(),
            pin: Secret::new(String::new()),
            pin_done_at: None,
            deadline: None,
            failures: 0,
            total_digits: 0,
            entry_digits: 0,
            actions: VecDeque::new(),
        };
        flow.enter(Stage::Id, now);
        flow
    }

    /// One DTMF digit (`0-9 * # A-D`); anything else is ignored.
    pub fn handle_digit(&mut self, now: Instant, digit: char) {
        if !(digit.is_ascii_digit() || "*#ABCD".contains(digit)) {
            return;
        }
        if !self.collecting() {
            return;
        }
        self.total_digits += 1;
        if self.total_digits > MAX_DIGITS_PER_CALL {
            self.end(Cue::Error);
            return;
        }
        self.deadline = Some(deadline_after(now, self.cfg.inter_digit_timeout));
        self.entry_digits += 1;
        if self.entry_digits > self.cfg.max_digits_per_prompt {
            match self.stage {
                Stage::Id | Stage::Pin => self.fail(now),
                // Credentials were entered: submit so that they are checked and counted.
                _ => self.submit(now, SignalSeen::Unmatched),
            }
            return;
        }
        match self.stage {
            Stage::Id | Stage::Pin => self.credential_digit(now, digit),
            Stage::Signal => {
                self.buf.push(digit);
                let p = &self.cfg.pattern;
                if self.cfg.separate_digit {
                    if p.match_without_digit(&self.buf) {
                        self.enter(Stage::SeparateDigit, now);
                    } else if !p.could_match(&self.buf, true) {
                        self.submit(now, SignalSeen::Unmatched);
                    }
                } else if let Some(d) = p.match_with_digit(&self.buf) {
                    self.submit(now, SignalSeen::Matched(d));
                } else if !p.could_match(&self.buf, false) {
                    self.submit(now, SignalSeen::Unmatched);
                }
            }
            Stage::SeparateDigit => {
                if digit == '#' {
                    let mut chars = self.buf.chars();
                    let seen = match (chars.next().and_then(AdminDigit::from_char), chars.next()) {
                        (Some(d), None) => SignalSeen::Matched(d),
                        _ => SignalSeen::Unmatched,
                    };
                    self.submit(now, seen);
                } else {
                    self.buf.push(digit);
                    if self.buf.len() > 1 || !digit.is_ascii_digit() {
                        self.submit(now, SignalSeen::Unmatched);
                    }
                }
            }
            Stage::AwaitDecision | Stage::Done => {}
        }
    }

    /// Fires the digit timeout if it is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.deadline else {
            return;
        };
        if now < deadline {
            return;
        }
        self.deadline = None;
        match self.stage {
            Stage::Id | Stage::Pin => self.fail(now),
            // Credentials were entered: submit so that they are checked and counted.
            Stage::Signal | Stage::SeparateDigit => self.submit(now, SignalSeen::Unmatched),
            Stage::AwaitDecision | Stage::Done => {}
        }
    }

    /// The runtime's decision on the submitted attempt.
    pub fn decided(&mut self, now: Instant, decision: &Decision) {
        if self.stage != Stage::AwaitDecision {
            return;
        }
        match decision {
            Decision::Allow { .. } => self.end(Cue::Ok),
            // A wrong guess may be retried within tries_per_call; a limit ends the call.
            Decision::Deny(reason) if reason.is_failed_attempt() => self.fail(now),
            Decision::Deny(_) => self.end(Cue::Error),
        }
    }

    /// The cues queued so far have finished playing at `now`: when no key of the current
    /// entry has come yet, the first-digit wait starts again from here, so a long prompt does
    /// not eat into it.
    pub fn prompt_played(&mut self, now: Instant) {
        if self.collecting() && self.entry_digits == 0 {
            self.deadline = Some(deadline_after(now, self.cfg.first_digit_timeout));
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once the flow has queued its hang-up.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    fn collecting(&self) -> bool {
        matches!(
            self.stage,
            Stage::Id | Stage::Pin | Stage::Signal | Stage::SeparateDigit
        )
    }

    fn credential_digit(&mut self, now: Instant, digit: char) {
        let cap = if self.stage == Stage::Id {
            MAX_ID_DIGITS
        } else {
            MAX_PIN_DIGITS
        };
        match digit {
            '#' if self.buf.is_empty() => self.fail(now),
            '#' => {
                let entered = std::mem::take(&mut self.buf);
                if self.stage == Stage::Id {
                    self.id = entered;
                    self.enter(Stage::Pin, now);
                } else {
                    self.pin = Secret::new(entered);
                    self.pin_done_at = Some(now);
                    self.enter(Stage::Signal, now);
                }
            }
            d if d.is_ascii_digit() && self.buf.len() < cap => self.buf.push(d),
            // Too many digits, or `*`/`A-D` inside an ID or PIN.
            _ => self.fail(now),
        }
    }

    fn enter(&mut self, stage: Stage, now: Instant) {
        self.stage = stage;
        self.buf.clear();
        self.entry_digits = 0;
        self.deadline = Some(deadline_after(now, self.cfg.first_digit_timeout));
        let item = match stage {
            Stage::Pin => Item::Pin,
            Stage::Signal => Item::Signal,
            Stage::SeparateDigit => Item::Digit,
            Stage::Id | Stage::AwaitDecision | Stage::Done => Item::Id,
        };
        self.actions.push_back(Action::PlayCue(Cue::Prompt(item)));
    }

    fn submit(&mut self, now: Instant, signal: SignalSeen) {
        let since_auth = self
            .pin_done_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.actions.push_back(Action::Submit(DtmfAttempt {
            id: std::mem::take(&mut self.id),
            pin: std::mem::replace(&mut self.pin, Secret::new(String::new())),
            signal,
            since_auth,
        }));
        self.buf.clear();
        self.stage = Stage::AwaitDecision;
        self.deadline = None;
    }

    /// One failed try: the same error cue, then start over or, after the last try, hang up.
    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        self.id.clear();
        self.pin = Secret::new(String::new());
        self.pin_done_at = None;
        if self.failures >= self.cfg.tries_per_call {
            self.end(Cue::Error);
        } else {
            self.actions.push_back(Action::PlayCue(Cue::Error));
            self.enter(Stage::Id, now);
        }
    }

    fn end(&mut self, cue: Cue) {
        self.actions.push_back(Action::PlayCue(cue));
        self.actions.push_back(Action::PlayCue(Cue::Goodbye));
        self.actions.push_back(Action::Hangup);
        self.stage = Stage::Done;
        self.deadline = None;
        self.buf.clear();
    }
}

/// `now + wait`, or `now` if that overflows `Instant` (an absurd configured wait then times
/// out at once rather than never, and never panics).
fn deadline_after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::decide::DenyReason;
    use crate::gate::policy::tests::{input, policy};

    fn flow(separate: bool) -> (CallFlow, Instant) {
        let mut i = input();
        i.signal.separate_digit = separate;
        let p = Policy::parse(i).unwrap();
        let t0 = Instant::now();
        (CallFlow::new(FlowConfig::from_policy(&p), t0), t0)
    }

    fn drain(f: &mut CallFlow) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    fn keys(f: &mut CallFlow, t: &mut Instant, s: &str) {
        for c in s.chars() {
            *t += Duration::from_millis(300);
            f.handle_digit(*t, c);
        }
    }

    fn submitted(actions: &[Action]) -> Option<&DtmfAttempt> {
        actions.iter().find_map(|a| match a {
            Action::Submit(x) => Some(x),
            _ => None,
        })
    }

    fn allow() -> Decision {
        Decision::Allow {
            admin: AdminId::parse("1001").unwrap(),
            numbers: vec![],
        }
    }

    const HANGUP_OK: [Action; 3] = [
        Action::PlayCue(Cue::Ok),
        Action::PlayCue(Cue::Goodbye),
        Action::Hangup,
    ];

    #[test]
    fn message_body_matches_after_trimming() {
        let p = policy();
        let s = p.signal();
        let d = |n| TextSignal::Start(AdminDigit::new(n).unwrap());
        assert_eq!(match_message(s, b"MAINTAIN-3"), d(3));
        assert_eq!(match_message(s, b"  MAINTAIN-7\r\n"), d(7));
        for bad in [
            &b"maintain-3"[..],
            b"MAINTAIN-",
            b"MAINTAIN-33",
            b"MAINTAIN- 3",
            b"xMAINTAIN-3",
            b"MAINTAIN-3 please",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(match_message(s, bad), TextSignal::NoMatch, "{bad:?}");
        }
        let long = [b' '; MAX_SIGNAL_BODY + 1];
        assert_eq!(match_message(s, &long), TextSignal::NoMatch);
    }

    #[test]
    fn message_separate_digit_variant() {
        let mut i = input();
        i.signal.separate_digit = true;
        let p = Policy::parse(i).unwrap();
        let s = p.signal();
        assert_eq!(
            match_message(s, b"MAINTAIN-\r\n"),
            TextSignal::StartWithoutDigit
        );
        assert_eq!(
            match_message(s, b" 4 "),
            TextSignal::DigitOnly(AdminDigit::new(4).unwrap())
        );
        assert_eq!(match_message(s, b"MAINTAIN-4"), TextSignal::NoMatch);
        assert_eq!(match_message(s, b"44"), TextSignal::NoMatch);
    }

    #[test]
    fn message_pairs_follow_the_separate_digit_variant() {
        let mut i = input();
        i.signal.separate_digit = true;
        let p = Policy::parse(i).unwrap();
        let a = AdminId::parse("1001").unwrap();
        let b = AdminId::parse("1002").unwrap();
        let t = WallTime(100);
        let mut m = MessageSignals::new();
        let d1 = SignalSeen::Matched(AdminDigit::new(1).unwrap());
        assert_eq!(m.handle(&p, &a, b"MAINTAIN-", t), MessageStep::AwaitDigit);
        // Another administrator's digit message does not consume a's pending signal.
        assert_eq!(
            m.handle(&p, &b, b"1", t.plus(1)),
            MessageStep::Decide {
                signal: SignalSeen::Unmatched,
                authenticated_at: t.plus(1)
            }
        );
        assert_eq!(
            m.handle(&p, &a, b"1\r\n", t.plus(5)),
            MessageStep::Decide {
                signal: d1,
                authenticated_at: t
            }
        );
        // Consumed: a second digit alone is unmatched.
        assert!(matches!(
            m.handle(&p, &a, b"1", t.plus(6)),
            MessageStep::Decide {
                signal: SignalSeen::Unmatched,
                ..
            }
        ));
        // Junk in between clears the pending start signal.
        m.handle(&p, &a, b"MAINTAIN-", t.plus(7));
        m.handle(&p, &a, b"hello", t.plus(8));
        assert!(matches!(
            m.handle(&p, &a, b"1", t.plus(9)),
            MessageStep::Decide {
                signal: SignalSeen::Unmatched,
                ..
            }
        ));
        // An ID outside the policy never matches.
        let stranger = AdminId::parse("5555").unwrap();
        assert!(matches!(
            m.handle(&p, &stranger, b"MAINTAIN-", t),
            MessageStep::Decide {
                signal: SignalSeen::Unmatched,
                ..
            }
        ));
    }

    #[test]
    fn message_combined_signal_decides_at_once() {
        let p = policy();
        let a = AdminId::parse("1001").unwrap();
        assert_eq!(
            MessageSignals::new().handle(&p, &a, b"MAINTAIN-2", WallTime(3)),
            MessageStep::Decide {
                signal: SignalSeen::Matched(AdminDigit::new(2).unwrap()),
                authenticated_at: WallTime(3)
            }
        );
    }

    #[test]
    fn happy_path_submits_id_pin_and_digit_then_ends_on_allow() {
        let (mut f, mut t) = flow(false);
        assert_eq!(drain(&mut f), vec![Action::PlayCue(Cue::Prompt(Item::Id))]);
        keys(&mut f, &mut t, "1001#");
        assert_eq!(drain(&mut f), vec![Action::PlayCue(Cue::Prompt(Item::Pin))]);
        keys(&mut f, &mut t, "4321#");
        assert_eq!(
            drain(&mut f),
            vec![Action::PlayCue(Cue::Prompt(Item::Signal))]
        );
        keys(&mut f, &mut t, "*62468246*1#");
        let actions = drain(&mut f);
        let a = submitted(&actions).unwrap();
        assert_eq!(a.id, "1001");
        assert_eq!(a.pin.expose(), "4321");
        assert_eq!(a.signal, SignalSeen::Matched(AdminDigit::new(1).unwrap()));
        assert_eq!(a.since_auth, Duration::from_millis(300 * 12));
        assert!(!format!("{a:?}").contains("4321"));
        assert_eq!(f.poll_timeout(), None);
        f.decided(t, &allow());
        assert_eq!(drain(&mut f), HANGUP_OK.to_vec());
        assert!(f.is_done());
    }

    #[test]
    fn wrong_pin_retries_with_the_same_error_cue_then_hangs_up() {
        let (mut f, mut t) = flow(false);
        drain(&mut f);
        for attempt in 1..=3 {
            keys(&mut f, &mut t, "1001#0000#*62468246*1#");
            let actions = drain(&mut f);
            assert!(submitted(&actions).is_some());
            f.decided(t, &Decision::Deny(DenyReason::BadCredentials));
            let after = drain(&mut f);
            if attempt < 3 {
                assert_eq!(
                    after,
                    vec![
                        Action::PlayCue(Cue::Error),
                        Action::PlayCue(Cue::Prompt(Item::Id))
                    ]
                );
            } else {
                assert_eq!(
                    after,
                    vec![
                        Action::PlayCue(Cue::Error),
                        Action::PlayCue(Cue::Goodbye),
                        Action::Hangup
                    ]
                );
            }
        }
        keys(&mut f, &mut t, "1001#");
        assert_eq!(drain(&mut f), vec![]);
    }

    #[test]
    fn limits_end_the_call_without_retry() {
        let (mut f, mut t) = flow(false);
        keys(&mut f, &mut t, "1001#4321#*62468246*1#");
        drain(&mut f);
        f.decided(t, &Decision::Deny(DenyReason::Locked));
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Goodbye),
                Action::Hangup
            ]
        );
    }

    #[test]
    fn wrong_signal_is_submitted_as_soon_as_it_cannot_match() {
        let (mut f, mut t) = flow(false);
        keys(&mut f, &mut t, "1001#4321#*6247");
        let actions = drain(&mut f);
        assert_eq!(submitted(&actions).unwrap().signal, SignalSeen::Unmatched);
    }

    #[test]
    fn first_digit_and_inter_digit_timeouts_fail_the_try() {
        let (mut f, t0) = flow(false);
        drain(&mut f);
        assert_eq!(f.poll_timeout(), Some(t0 + FIRST_DIGIT_TIMEOUT));
        f.handle_timeout(t0 + FIRST_DIGIT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(drain(&mut f), vec![]);
        f.handle_timeout(t0 + FIRST_DIGIT_TIMEOUT);
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Prompt(Item::Id))
            ]
        );
        let mut t = t0 + FIRST_DIGIT_TIMEOUT;
        keys(&mut f, &mut t, "10");
        assert_eq!(f.poll_timeout(), Some(t + INTER_DIGIT_TIMEOUT));
        t += INTER_DIGIT_TIMEOUT;
        f.handle_timeout(t);
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Prompt(Item::Id))
            ]
        );
        // Third try: time out during the signal; the credentials are still submitted.
        keys(&mut f, &mut t, "1001#4321#*62");
        drain(&mut f);
        t += INTER_DIGIT_TIMEOUT;
        f.handle_timeout(t);
        let actions = drain(&mut f);
        assert_eq!(submitted(&actions).unwrap().signal, SignalSeen::Unmatched);
        f.decided(t, &Decision::Deny(DenyReason::UnknownSignal));
        assert_eq!(drain(&mut f).last(), Some(&Action::Hangup));
    }

    #[test]
    fn overlong_id_or_pin_fails_the_try() {
        let (mut f, mut t) = flow(false);
        drain(&mut f);
        keys(&mut f, &mut t, &"1".repeat(MAX_ID_DIGITS + 1));
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Prompt(Item::Id))
            ]
        );
        keys(&mut f, &mut t, "1001#*");
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Prompt(Item::Pin)),
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Prompt(Item::Id))
            ]
        );
    }

    #[test]
    fn digit_cap_per_call_hangs_up() {
        let (mut f, mut t) = flow(false);
        let mut i = input();
        i.security.tries_per_call = 10;
        let p = Policy::parse(i).unwrap();
        f.cfg = FlowConfig::from_policy(&p);
        // Each try: 16 digits of ID then a 17th that fails the try; never reaches a decision.
        for _ in 0..MAX_DIGITS_PER_CALL {
            t += Duration::from_millis(100);
            f.handle_digit(t, '5');
            if f.is_done() {
                break;
            }
        }
        let before = drain(&mut f);
        assert!(!f.is_done(), "{before:?}");
        f.handle_digit(t, '5');
        assert!(f.is_done());
        assert_eq!(drain(&mut f).last(), Some(&Action::Hangup));
    }

    #[test]
    fn an_entry_longer_than_max_digits_fails_the_try_or_ends_the_signal() {
        let (mut f, mut t) = flow(false);
        f.cfg.max_digits_per_prompt = 4;
        drain(&mut f);
        // Four keys (`#` included) are an entry; a fifth fails the try, before any `#`.
        keys(&mut f, &mut t, "100#");
        assert_eq!(drain(&mut f), vec![Action::PlayCue(Cue::Prompt(Item::Pin))]);
        f = flow(false).0;
        f.cfg.max_digits_per_prompt = 4;
        drain(&mut f);
        keys(&mut f, &mut t, "1001");
        assert_eq!(drain(&mut f), vec![]);
        keys(&mut f, &mut t, "#");
        assert_eq!(
            drain(&mut f),
            vec![
                Action::PlayCue(Cue::Error),
                Action::PlayCue(Cue::Prompt(Item::Id))
            ]
        );
        // The count starts again at each prompt; a signal longer than the cap is submitted
        // unmatched, so the credentials are still checked and counted.
        let (mut f, mut t) = flow(false);
        f.cfg.max_digits_per_prompt = 12;
        keys(&mut f, &mut t, "1001#4321#");
        drain(&mut f);
        keys(&mut f, &mut t, "*62468246*1#");
        let actions = drain(&mut f);
        assert_eq!(
            submitted(&actions).unwrap().signal,
            SignalSeen::Matched(AdminDigit::new(1).unwrap())
        );
        let (mut f, mut t) = flow(false);
        f.cfg.max_digits_per_prompt = 11;
        keys(&mut f, &mut t, "1001#4321#*62468246*1#");
        let actions = drain(&mut f);
        assert_eq!(submitted(&actions).unwrap().signal, SignalSeen::Unmatched);
    }

    #[test]
    fn first_digit_wait_restarts_when_the_prompt_has_played() {
        let (mut f, t0) = flow(false);
        drain(&mut f);
        let played = t0 + Duration::from_secs(4);
        f.prompt_played(played);
        assert_eq!(f.poll_timeout(), Some(played + FIRST_DIGIT_TIMEOUT));
        f.handle_timeout(t0 + FIRST_DIGIT_TIMEOUT);
        assert_eq!(drain(&mut f), vec![]);
        // Once a key of the entry came, the inter-digit wait stands.
        let mut t = played;
        keys(&mut f, &mut t, "1");
        f.prompt_played(t + Duration::from_secs(1));
        assert_eq!(f.poll_timeout(), Some(t + INTER_DIGIT_TIMEOUT));
        // Nothing to wait for while the attempt is being decided.
        keys(&mut f, &mut t, "001#4321#*62468246*1#");
        drain(&mut f);
        f.prompt_played(t);
        assert_eq!(f.poll_timeout(), None);
    }

    #[test]
    fn default_entry_cap_is_the_dialplan_default() {
        let (f, _) = flow(false);
        assert_eq!(f.cfg.max_digits_per_prompt, MAX_DIGITS_PER_PROMPT);
    }

    #[test]
    fn separate_digit_variant_prompts_for_the_digit() {
        let (mut f, mut t) = flow(true);
        keys(&mut f, &mut t, "1001#4321#");
        drain(&mut f);
        keys(&mut f, &mut t, "*62468246*#");
        assert_eq!(
            drain(&mut f),
            vec![Action::PlayCue(Cue::Prompt(Item::Digit))]
        );
        keys(&mut f, &mut t, "1#");
        let actions = drain(&mut f);
        assert_eq!(
            submitted(&actions).unwrap().signal,
            SignalSeen::Matched(AdminDigit::new(1).unwrap())
        );
        f.decided(t, &allow());
        assert_eq!(drain(&mut f), HANGUP_OK.to_vec());

        let (mut f, mut t) = flow(true);
        keys(&mut f, &mut t, "1001#4321#*62468246*#12");
        let actions = drain(&mut f);
        assert_eq!(submitted(&actions).unwrap().signal, SignalSeen::Unmatched);
        // In the separate variant the combined form is not the signal.
        let (mut f, mut t) = flow(true);
        keys(&mut f, &mut t, "1001#4321#*62468246*1");
        let actions = drain(&mut f);
        assert_eq!(submitted(&actions).unwrap().signal, SignalSeen::Unmatched);
    }

    #[test]
    fn no_cue_between_steps_depends_on_what_was_keyed() {
        let (mut a, mut ta) = flow(false);
        let (mut b, mut tb) = flow(false);
        keys(&mut a, &mut ta, "1001#4321#");
        keys(&mut b, &mut tb, "9999#0000#");
        assert_eq!(drain(&mut a), drain(&mut b));
    }

    #[test]
    fn non_dtmf_input_and_late_digits_are_ignored() {
        let (mut f, mut t) = flow(false);
        drain(&mut f);
        f.handle_digit(t, 'x');
        f.handle_digit(t, '\u{0}');
        assert_eq!(drain(&mut f), vec![]);
        keys(&mut f, &mut t, "1001#4321#*62468246*1#");
        drain(&mut f);
        keys(&mut f, &mut t, "123#");
        assert_eq!(drain(&mut f), vec![]);
        f.decided(t, &allow());
        f.decided(t, &allow());
        assert_eq!(drain(&mut f), HANGUP_OK.to_vec());
    }

    #[derive(Debug, Clone)]
    enum Input {
        Digit(char),
        Wait(u64),
        Decide(u8),
    }

    fn arb_input() -> impl proptest::strategy::Strategy<Value = Input> {
        use proptest::prelude::*;
        prop_oneof![
            6 => proptest::sample::select("0123456789*#ABCDx".chars().collect::<Vec<_>>())
                .prop_map(Input::Digit),
            1 => (0u64..20_000).prop_map(Input::Wait),
            1 => (0u8..4).prop_map(Input::Decide),
        ]
    }

    proptest::proptest! {
        /// Whatever is keyed, and whenever: no panic, at most `tries_per_call` attempts are
        /// submitted, nothing happens after the hang-up, and a call never outlives its
        /// timeouts.
        #[test]
        fn call_flow_stays_bounded_on_any_input(
            separate in proptest::bool::ANY,
            inputs in proptest::collection::vec(arb_input(), 0..300),
        ) {
            let (mut f, mut t) = flow(separate);
            let tries = f.cfg.tries_per_call as usize;
            let mut submits = 0;
            let mut hangups = 0;
            let mut after_hangup = 0;
            for input in inputs {
                match input {
                    Input::Digit(c) => {
                        t += Duration::from_millis(200);
                        f.handle_digit(t, c);
                    }
                    Input::Wait(ms) => {
                        t += Duration::from_millis(ms);
                        f.handle_timeout(t);
                    }
                    Input::Decide(k) => {
                        let d = match k {
                            0 => allow(),
                            1 => Decision::Deny(DenyReason::BadCredentials),
                            2 => Decision::Deny(DenyReason::UnknownSignal),
                            _ => Decision::Deny(DenyReason::RateLimited),
                        };
                        f.decided(t, &d);
                    }
                }
                for a in drain(&mut f) {
                    if hangups > 0 {
                        after_hangup += 1;
                    }
                    match a {
                        Action::Submit(_) => submits += 1,
                        Action::Hangup => hangups += 1,
                        Action::PlayCue(_) => {}
                    }
                }
                if let Some(deadline) = f.poll_timeout() {
                    proptest::prop_assert!(deadline <= t + FIRST_DIGIT_TIMEOUT);
                }
            }
            proptest::prop_assert!(submits <= tries, "{} submits", submits);
            proptest::prop_assert!(hangups <= 1);
            proptest::prop_assert_eq!(after_hangup, 0);
            proptest::prop_assert_eq!(f.is_done(), hangups == 1);
        }
    }
}
