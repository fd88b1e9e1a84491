//! The validated dialplan. A value of these types has passed every check in `validate`, so
//! the gate, SIP and media layers can use it without re-checking (STYLE.md: "policy is built
//! from config by parsing, so an invalid policy cannot exist").
//!
//! Relative paths (prompts, `password_file`, `security.state_path`, `audit.path`) are resolved
//! against the directory of the dialplan file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::uri::{CallbackNumber, SipUri};
use super::Secret;

/// The whole dialplan (DESIGN.md "Dialplan").
#[derive(Debug, Clone)]
pub struct Dialplan {
    pub trunks: Trunks,
    /// Defaults: see [`Limits`].
    pub limits: Limits,
    /// Default: none (no one can trigger a callback).
    pub admins: Vec<Admin>,
    pub signal: Signal,
    pub routes: Routes,
    pub callback: Callback,
    pub security: Security,
    pub audit: Audit,
    pub media: Media,
    pub modem: Modem,
}

impl Dialplan {
    /// The administrator a start-signal digit names, if any.
    pub fn admin(&self, digit: AdminDigit) -> Option<&Admin> {
        self.admins.iter().find(|a| a.digit == digit)
    }

    /// The administrator with login `id`, if any.
    pub fn admin_by_id(&self, id: &str) -> Option<&Admin> {
        self.admins.iter().find(|a| a.id == id)
    }
}

/// The three trunks of the patent's Fig. 1 and 2; all three are required.
#[derive(Debug, Clone)]
pub struct Trunks {
    /// Port 12: the public number users call (claim 4).
    pub user: RegisteringTrunk,
    /// Port 13: the unpublished maintenance number (claim 3).
    pub admin: RegisteringTrunk,
    /// Port 15: dispatch only; never registers, accepts nothing from outside our dialogs.
    pub originate: OriginateTrunk,
}

/// SIP transport of a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
}

/// A trunk that registers with a registrar (RFC 3261 §10) and receives calls and MESSAGEs.
#[derive(Debug, Clone)]
pub struct RegisteringTrunk {
    /// Local socket address, `IPv4:port` or `[IPv6]:port`. Required; distinct across trunks.
    pub listen: SocketAddr,
    /// The address the PBX reaches this trunk at, put in Via sent-by, Contact and SDP `c=`
    /// (RFC 3261 §18.2.1, §8.1.1.8; RFC 4566 §5.7). Default: `listen`, which must then not
    /// be a wildcard address.
    pub advertise: SocketAddr,
    /// Default: `udp`.
    pub transport: Transport,
    /// Registrar URI; required when `register` is true.
    pub registrar: Option<SipUri>,
    /// Outbound proxy (RFC 3261 §8.1.2); default: none, send to the registrar.
    pub outbound_proxy: Option<SipUri>,
    /// Address of record registered for this trunk (`sip:` or `sips:`). Required.
    pub aor: SipUri,
    /// Digest username; default: none (no authentication offered).
    pub auth_username: Option<String>,
    /// Digest password from `password_env`, `password_file` or inline `password` (warned).
    pub password: Option<Secret>,
    /// Requested registration lifetime (RFC 3261 §10.2.1.1). Default 300, minimum 10.
    pub expires_s: u32,
    /// Whether to REGISTER at all. Default: true.
    pub register: bool,
}

/// The originate-only trunk that places callbacks.
#[derive(Debug, Clone)]
pub struct OriginateTrunk {
    /// Local socket address. Required; distinct across trunks.
    pub listen: SocketAddr,
    /// The address the proxy reaches this trunk at (Via, Contact, SDP). Default: `listen`.
    pub advertise: SocketAddr,
    /// Default: `udp`.
    pub transport: Transport,
    /// Proxy every callback INVITE is sent to. Required.
    pub proxy: SipUri,
    /// From URI of callbacks. Required.
    pub from: SipUri,
    /// Digest username; default: none.
    pub auth_username: Option<String>,
    /// Digest password, as for [`RegisteringTrunk::password`].
    pub password: Option<Secret>,
    /// Sources whose responses and in-dialog requests are accepted. Default: the proxy's
    /// `IP:port` (port 5060 if absent, 5061 for `sips:`) when the proxy host is an IP literal;
    /// a hostname proxy requires an explicit list.
    pub allow_sources: Vec<SocketAddr>,
}

/// Resource caps (STYLE.md "Bad input is data").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest SIP message accepted, bytes. Default 8192. Must be at least 1024.
    pub max_message_bytes: u32,
    /// Most header fields in one message. Default 64. Must be positive.
    pub max_headers: u32,
    /// Sustained messages per second per source. Default 500. Must be positive.
    pub per_source_rate: u32,
    /// Burst allowance per source. Default 1000. Must be at least `per_source_rate`.
    pub per_source_burst: u32,
    /// Concurrent transactions. Default 4096. Must be positive.
    pub max_transactions: u32,
    /// Concurrent dialogs. Default 256. Must be positive.
    pub max_dialogs: u32,
    /// Depth of each inbound queue. Default 1024. Must be positive.
    pub queue_depth: u32,
}

/// The digit that names an administrator in the start signal (claim 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdminDigit(u8);

impl AdminDigit {
    /// Accepts 0..=9.
    pub fn new(digit: u8) -> Option<Self> {
        (digit <= 9).then_some(Self(digit))
    }

    pub fn value(self) -> u8 {
        self.0
    }

    /// The ASCII character `'0'..='9'`.
    pub fn as_char(self) -> char {
        char::from(b'0' + self.0)
    }
}

impl fmt::Display for AdminDigit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One administrator.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Unique digit 0..=9. Required.
    pub digit: AdminDigit,
    /// Unique login ID (also the digest username). Required, non-empty.
    pub id: String,
    /// Display name for audit. Default: empty.
    pub name: String,
    /// argon2id PHC string of the DTMF PIN (`$argon2id$...`). Required.
    pub pin: Secret,
    /// SIP digest credentials (RFC 7616 §3.4.2 A1 hashes); at least one HA1 is required.
    pub digest: DigestCredentials,
    /// Callback numbers in the order tried. Required, non-empty; `sip:`, `sips:` or `tel:`.
    pub numbers: Vec<CallbackNumber>,
}

/// Pre-computed HA1 = H(username ":" realm ":" password) values (RFC 7616 §3.4.2).
#[derive(Debug, Clone)]
pub struct DigestCredentials {
    /// Default: `security.realm`.
    pub realm: String,
    /// 32 lowercase hex digits (MD5).
    pub ha1_md5: Option<Secret>,
    /// 64 lowercase hex digits (SHA-256).
    pub ha1_sha256: Option<Secret>,
}

/// A start-signal pattern split around its `{digit}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPattern {
    /// Text before `{digit}` (or the whole pattern when there is no placeholder).
    pub prefix: String,
    /// Text after `{digit}`; `None` when the pattern has no placeholder (`separate_digit`).
    pub suffix: Option<String>,
}

impl SignalPattern {
    /// The signal as the administrator sends it for `digit`.
    pub fn render(&self, digit: AdminDigit) -> String {
        match &self.suffix {
            Some(suffix) => format!("{}{}{}", self.prefix, digit.as_char(), suffix),
            None => self.prefix.clone(),
        }
    }

    /// The inverse of [`render`](Self::render): the digit if `signal` is exactly this pattern
    /// with one digit in place of `{digit}`. Always `None` for a pattern without placeholder.
    pub fn digit_in(&self, signal: &str) -> Option<AdminDigit> {
        let suffix = self.suffix.as_deref()?;
        let rest = signal.strip_prefix(self.prefix.as_str())?;
        let rest = rest.strip_suffix(suffix)?;
        let mut chars = rest.chars();
        let digit = chars.next()?.to_digit(10)?;
        if chars.next().is_some() {
            return None;
        }
        u8::try_from(digit).ok().and_then(AdminDigit::new)
    }
}

/// The maintenance start signal (claim 1: a signal separate from the authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// MESSAGE body pattern. Default `MAINTAIN-{digit}`.
    pub text: SignalPattern,
    /// DTMF pattern, characters `0-9*#A-D` plus `{digit}`. Default `*62468246*{digit}#`.
    pub dtmf: SignalPattern,
    /// Seconds after authentication during which the signal is accepted. Default 120, 1..=3600.
    pub window_s: u32,
    /// When true the digit is sent on its own after the pattern, and patterns must not
    /// contain `{digit}`. Default false.
    pub separate_digit: bool,
}

/// What a trunk does with a request that is not maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Otherwise {
    /// Final response code, 400..=499 or 600..=699.
    Reject(u16),
    /// 302 to this URI.
    Redirect(SipUri),
}

/// Per-trunk routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Whether a MESSAGE may carry maintenance. Default true.
    pub message: bool,
    /// Whether a call may carry maintenance. Default true.
    pub call: bool,
    /// Default: `{"reject": 404}` on the user trunk, `{"reject": 403}` on the admin trunk.
    pub otherwise: Otherwise,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub user: Route,
    pub admin: Route,
}

/// What to do when the callback shows signs of diversion (DESIGN.md step 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDiversion {
    /// Hang up and audit. The default.
    Abort,
    /// Audit and carry on.
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// Pause between ending the inbound contact and dialling, ms. Default 2000, at most 60000.
    pub delay_ms: u32,
    /// How long the callback may ring, s. Default 30, 1..=300.
    pub ring_timeout_s: u32,
    /// Callbacks per administrator per hour. Default 3, must be positive.
    pub max_per_admin_per_hour: u32,
    /// Default `abort`.
    pub on_diversion: OnDiversion,
    /// How long an answered callback waits for modem training, s. Default 30, positive.
    pub answered_hold_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// PIN/password attempts per call. Default 3, positive.
    pub tries_per_call: u32,
    /// Failures per administrator before lockout. Default 5, positive.
    pub max_failures: u32,
    /// Window over which failures count, s. Default 900, positive.
    pub failure_window_s: u32,
    /// Lockout duration, s. Default 1800, positive.
    pub lock_s: u32,
    /// Failures per source address before it is locked out. Default 10, positive.
    pub per_source_max_failures: u32,
    /// Digest nonce lifetime, s. Default 300, positive.
    pub nonce_ttl_s: u32,
    /// Digest realm (RFC 7616 §3.3). Default `dialback`, non-empty.
    pub realm: String,
    /// Digest algorithms the MESSAGE challenge offers, in order (RFC 8760 §2.4). Default
    /// `["SHA-256", "MD5"]`. MD5-only user agents that answer only the first challenge
    /// (sipsak 0.9) need MD5 first; baresip 1.0 gives up if any SHA-256 challenge is offered.
    pub digest_algorithms: Vec<String>,
    /// Lockout/rate state file. Default `state.json` next to the dialplan.
    pub state_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// JSON-lines audit log. Default `audit.jsonl` next to the dialplan.
    pub path: PathBuf,
    /// fsync after every record. Default true.
    pub fsync: bool,
}

/// The prompt names `media.prompts` may use; each replaces one tone cue of the maintenance
/// call (see `runtime::prompts` for when each plays).
pub const PROMPT_NAMES: [&str; 8] = [
    "welcome",
    "enter_id",
    "enter_pin",
    "enter_signal",
    "enter_digit",
    "ok",
    "error",
    "goodbye",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Inclusive RTP port range `[low, high]`. Default `[20000, 20999]`; low even, low < high.
    pub rtp_ports: (u16, u16),
    /// Jitter buffer depth, ms. Default 60, at most 1000.
    pub jitter_ms: u32,
    /// Hang up after this long without RTP, s. Default 30, positive.
    pub rtp_timeout_s: u32,
    /// Minimum DTMF tone duration, ms. Default 40 (Q.24 lower bound), 20..=200.
    pub dtmf_min_tone_ms: u32,
    /// Minimum pause between DTMF tones, ms. Default 40, 20..=200.
    pub dtmf_min_pause_ms: u32,
    /// Timeout for the first digit, s. Default 10, positive.
    pub first_digit_timeout_s: u32,
    /// Timeout between digits, s. Default 5, positive.
    pub inter_digit_timeout_s: u32,
    /// Most digits collected per prompt. Default 32, 1..=256.
    pub max_digits: u32,
    /// Prompt name (one of [`PROMPT_NAMES`]) to WAV path (8 kHz mono PCM16 or G.711).
    /// Default: none.
    pub prompts: BTreeMap<String, PathBuf>,
}

/// A modulation the callback modem may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modulation {
    /// ITU-T V.22bis, 2400 bit/s.
    V22bis,
    /// ITU-T V.22, 1200 bit/s.
    V22,
    /// ITU-T V.21, 300 bit/s FSK.
    V21,
    /// Bell 103, 300 bit/s FSK.
    Bell103,
}

/// Where the modem session's data stream is bridged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModemTarget {
    /// The gate's built-in maintenance console.
    Console,
    /// A TCP service; `host` is a name or IP literal (IPv6 without brackets).
    Tcp { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modem {
    /// Tried in order. Default `["v22bis", "v22", "v21", "bell103"]`; non-empty, no duplicates.
    pub modulations: Vec<Modulation>,
    /// `console` or `tcp:HOST:PORT`. Default `console`.
    pub target: ModemTarget,
    /// Transmit level, dBm0. Default -12, within -43..=-6.
    pub tx_level_dbm0: i8,
    /// Idle timeout, s. Default 300, positive.
    pub idle_s: u32,
    /// Session limit, s. Default 3600, at least `idle_s`.
    pub max_s: u32,
    /// Re-authentication attempts over the modem link. Default 3, positive.
    pub login_tries: u32,
    /// Seconds from answer to CONNECT before the callback is ended as a modem training
    /// failure (a voice answer, a fax, a voicemail). Default 20, 1..=120.
    pub connect_timeout_s: u32,
}
