//! The gate's policy, built only by parsing plain values, so an invalid policy cannot exist.
//!
//! Owns the administrators (recognition digit, claim 2; ID; callback numbers registered in
//! advance, \[0016\], in priority order; argon2id PIN hash; digest HA1 values, RFC 7616
//! §3.4.2), the start-signal patterns (\[0011\], \[0015\], \[0031\]), callback limits and security
//! limits. It knows nothing of the dialplan file format: `config` converts into
//! [`PolicyInput`]. No IO.

use std::fmt;

use argon2::password_hash::PasswordHash;
use serde::{Deserialize, Serialize};

use super::GateError;
use crate::sip::digest::Algorithm;

/// Longest administrator ID (entered as DTMF digits, also the digest username).
pub const MAX_ID_DIGITS: usize = 16;
/// Most callback numbers per administrator: registered in advance (\[0016\]), tried in priority
/// order (desk, mobile, ...; DESIGN.md step 5).
pub const MAX_NUMBERS: usize = 8;
/// Most administrators: one per recognition digit (claim 2).
pub const MAX_ADMINS: usize = 10;
const MAX_NAME_CHARS: usize = 64;
const MAX_URI_LEN: usize = 256;
const MAX_REALM_LEN: usize = 128;
const MAX_PATTERN_LEN: usize = 64;
/// The placeholder for the administrator recognition digit in signal patterns.
pub const DIGIT_PLACEHOLDER: &str = "{digit}";

/// The administrator recognition digit 0–9 (claim 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct AdminDigit(u8);

impl AdminDigit {
    pub fn new(value: u8) -> Result<Self, GateError> {
        if value <= 9 {
            Ok(AdminDigit(value))
        } else {
            Err(GateError::DigitOutOfRange { value })
        }
    }

    pub fn from_char(c: char) -> Option<Self> {
        c.to_digit(10)
            .and_then(|d| u8::try_from(d).ok())
            .map(AdminDigit)
    }

    pub fn value(self) -> u8 {
        self.0
    }

    pub fn as_char(self) -> char {
        char::from(b'0' + self.0)
    }
}

impl TryFrom<u8> for AdminDigit {
    type Error = GateError;
    fn try_from(value: u8) -> Result<Self, GateError> {
        AdminDigit::new(value)
    }
}

impl From<AdminDigit> for u8 {
    fn from(d: AdminDigit) -> u8 {
        d.0
    }
}

impl fmt::Display for AdminDigit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An administrator ID: 1–16 decimal digits, so it can be keyed as DTMF; it is also the
/// digest username for SIP MESSAGE authentication.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminId(String);

impl AdminId {
    pub fn parse(value: &str) -> Result<Self, GateError> {
        if (1..=MAX_ID_DIGITS).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AdminId(value.to_owned()))
        } else {
            Err(GateError::BadAdminId {
                value: value.chars().take(MAX_ID_DIGITS + 4).collect(),
                max: MAX_ID_DIGITS,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AdminId {
    type Error = GateError;
    fn try_from(value: String) -> Result<Self, GateError> {
        AdminId::parse(&value)
    }
}

impl From<AdminId> for String {
    fn from(id: AdminId) -> String {
        id.0
    }
}

impl fmt::Display for AdminId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A callback number registered in advance: a `sip:`, `sips:` or `tel:` URI (RFC 3261 §19.1,
/// RFC 3966). The gate only ever dials these (\[0016\]), never a number from a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CallbackNumber(String);

impl CallbackNumber {
    pub fn parse(value: &str) -> Option<Self> {
        valid_uri(value).then(|| CallbackNumber(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Digest credentials stored for MESSAGE authentication: HA1 values, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestHa1 {
    md5: Option<String>,
    sha256: Option<String>,
}

impl DigestHa1 {
    pub fn md5(&self) -> Option<&str> {
        self.md5.as_deref()
    }

    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }
}

impl fmt::Debug for DigestHa1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestHa1(REDACTED)")
    }
}

/// One administrator.
#[derive(Clone, PartialEq, Eq)]
pub struct Admin {
    digit: AdminDigit,
    id: AdminId,
    name: String,
    numbers: Vec<CallbackNumber>,
    pin_hash: Option<String>,
    ha1: Option<DigestHa1>,
}

impl Admin {
    pub fn digit(&self) -> AdminDigit {
        self.digit
    }
    pub fn id(&self) -> &AdminId {
        &self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Callback numbers in priority order.
    pub fn numbers(&self) -> &[CallbackNumber] {
        &self.numbers
    }
    /// The argon2id PHC string, if DTMF entry is enabled for this administrator.
    pub fn pin_hash(&self) -> Option<&str> {
        self.pin_hash.as_deref()
    }
    /// Digest HA1 values, if MESSAGE authentication is enabled for this administrator.
    pub fn ha1(&self) -> Option<&DigestHa1> {
        self.ha1.as_ref()
    }
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("digit", &self.digit)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("numbers", &self.numbers)
            .field("pin_hash", &self.pin_hash.as_ref().map(|_| "REDACTED"))
            .field("ha1", &self.ha1)
            .finish()
    }
}

/// Which alphabet a signal pattern is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// A SIP MESSAGE body: printable ASCII.
    Text,
    /// A DTMF sequence: `0-9 * # A-D` (RFC 4733 §3.2 events 0–15).
    Dtmf,
}

/// A start-signal pattern with exactly one `{digit}` placeholder (\[0011\], claim 2). In the
/// separate-digit variant (\[0031\]) the start signal is the pattern with the placeholder
/// removed, and the digit follows as its own signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPattern {
    prefix: String,
    suffix: String,
}

impl SignalPattern {
    pub fn parse(pattern: &str, kind: PatternKind) -> Result<Self, GateError> {
        let bad = |problem| GateError::BadPattern {
            pattern: pattern.chars().take(MAX_PATTERN_LEN + 8).collect(),
            problem,
        };
        if pattern.len() > MAX_PATTERN_LEN + DIGIT_PLACEHOLDER.len() {
            return Err(bad("too long"));
        }
        let (prefix, suffix) = pattern
            .split_once(DIGIT_PLACEHOLDER)
            .ok_or_else(|| bad("no {digit} placeholder"))?;
        if suffix.contains(DIGIT_PLACEHOLDER) {
            return Err(bad("more than one {digit} placeholder"));
        }
        let fixed_len = prefix.len() + suffix.len();
        let allowed = |c: char| match kind {
            PatternKind::Text => c.is_ascii_graphic() || c == ' ',
            PatternKind::Dtmf => c.is_ascii_digit() || "*#ABCD".contains(c),
        };
        if !prefix.chars().chain(suffix.chars()).all(allowed) {
            return Err(bad("character outside the pattern alphabet"));
        }
        // A signal of the digit alone would be guessable and could collide with PIN entry.
        if fixed_len < 2 {
            return Err(bad("needs at least two characters besides {digit}"));
        }
        if kind == PatternKind::Text && (pattern.trim() != pattern) {
            return Err(bad("leading or trailing whitespace"));
        }
        Ok(SignalPattern {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The digit if `signal` is exactly the pattern with one decimal digit in its place.
    pub fn match_with_digit(&self, signal: &str) -> Option<AdminDigit> {
        let middle = signal
            .strip_prefix(self.prefix.as_str())?
            .strip_suffix(self.suffix.as_str())?;
        let mut chars = middle.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => AdminDigit::from_char(c),
            _ => None,
        }
    }

    /// True if `signal` is the pattern with the placeholder removed (\[0031\] variant).
    pub fn match_without_digit(&self, signal: &str) -> bool {
        signal.len() == self.prefix.len() + self.suffix.len()
            && signal.starts_with(self.prefix.as_str())
            && signal.ends_with(self.suffix.as_str())
    }

    /// True if `partial` can still grow into a match (with the digit, or without it when
    /// `separate_digit`).
    pub fn could_match(&self, partial: &str, separate_digit: bool) -> bool {
        let p = partial.as_bytes();
        let (pre, suf) = (self.prefix.as_bytes(), self.suffix.as_bytes());
        let matches_at = |expected: &[u8], from: usize, got: &[u8]| {
            got.iter()
                .zip(expected.iter().skip(from))
                .all(|(a, b)| a == b)
                && got.len() <= expected.len().saturating_sub(from)
        };
        if p.len() <= pre.len() {
            return matches_at(pre, 0, p);
        }
        let (head, tail) = p.split_at(pre.len());
        if head != pre {
            return false;
        }
        if separate_digit {
            return matches_at(suf, 0, tail);
        }
        match tail.split_first() {
            None => true,
            Some((d, rest)) => d.is_ascii_digit() && matches_at(suf, 0, rest),
        }
    }

    /// The longest signal this pattern accepts, in characters.
    pub fn max_len(&self) -> usize {
        self.prefix.len() + 1 + self.suffix.len()
    }
}

/// What to do when the callback shows signs of call diversion (DESIGN.md step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDiversion {
    /// End the callback: the number answering is not the registered one.
    Abort,
    /// Go on with the callback; the modem re-authentication still guards the session.
    Continue,
}

/// Start-signal policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalPolicy {
    text: SignalPattern,
    dtmf: SignalPattern,
    window_s: u64,
    separate_digit: bool,
}

impl SignalPolicy {
    pub fn text(&self) -> &SignalPattern {
        &self.text
    }
    pub fn dtmf(&self) -> &SignalPattern {
        &self.dtmf
    }
    /// Seconds after the authentication step in which the start signal is accepted.
    pub fn window_s(&self) -> u64 {
        self.window_s
    }
    /// \[0031\]: the digit comes as a separate signal after the start signal.
    pub fn separate_digit(&self) -> bool {
        self.separate_digit
    }
}

/// Callback policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackPolicy {
    delay_s: u64,
    ring_timeout_s: u64,
    max_per_admin_per_hour: u32,
    on_diversion: OnDiversion,
}

impl CallbackPolicy {
    pub fn delay_s(&self) -> u64 {
        self.delay_s
    }
    pub fn ring_timeout_s(&self) -> u64 {
        self.ring_timeout_s
    }
    pub fn max_per_admin_per_hour(&self) -> u32 {
        self.max_per_admin_per_hour
    }
    pub fn on_diversion(&self) -> OnDiversion {
        self.on_diversion
    }
}

/// Lockout and abuse limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityPolicy {
    tries_per_call: u32,
    max_failures: u32,
    failure_window_s: u64,
    lock_s: u64,
    per_source_max_failures: u32,
    nonce_ttl_s: u64,
}

impl SecurityPolicy {
    pub fn tries_per_call(&self) -> u32 {
        self.tries_per_call
    }
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }
    pub fn failure_window_s(&self) -> u64 {
        self.failure_window_s
    }
    pub fn lock_s(&self) -> u64 {
        self.lock_s
    }
    pub fn per_source_max_failures(&self) -> u32 {
        self.per_source_max_failures
    }
    pub fn nonce_ttl_s(&self) -> u64 {
        self.nonce_ttl_s
    }
}

/// The validated policy. Only [`Policy::parse`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    realm: String,
    admins: Vec<Admin>,
    signal: SignalPolicy,
    callback: CallbackPolicy,
    security: SecurityPolicy,
    digest_algorithms: Vec<Algorithm>,
    dummy_pin_hash: String,
}

// ---------------------------------------------------------------------------------------------
// plain input

/// Plain values to parse a [`Policy`] from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// Digest realm of the MESSAGE challenge; every administrator's HA1 is computed with it.
    pub realm: String,
    pub admins: Vec<AdminInput>,
    #[serde(default)]
    pub signal: SignalInput,
    #[serde(default)]
    pub callback: CallbackInput,
    #[serde(default)]
    pub security: SecurityInput,
    /// Digest algorithms to challenge with, in the order offered (`"SHA-256"`, `"MD5"`,
    /// `"SHA-256-sess"`, `"MD5-sess"`). Empty: SHA-256 then MD5 (RFC 8760 §2.4 preference).
    /// MD5-only user agents need MD5 first (sipsak 0.9.8 answers only the topmost
    /// challenge) or alone (baresip 1.0 gives up if any challenge is SHA-256); either
    /// downgrades agents that could do SHA-256.
    #[serde(default)]
    pub digest_algorithms: Vec<String>,
}

/// Plain values for one administrator.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminInput {
    pub digit: u8,
    pub id: String,
    pub name: String,
    pub numbers: Vec<String>,
    /// argon2id PHC string of the DTMF PIN.
    #[serde(default)]
    pub pin_hash: Option<String>,
    /// The realm the HA1 values were computed with; must equal [`PolicyInput::realm`].
    #[serde(default)]
    pub ha1_realm: Option<String>,
    #[serde(default)]
    pub ha1_md5: Option<String>,
    #[serde(default)]
    pub ha1_sha256: Option<String>,
}

impl fmt::Debug for AdminInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminInput")
            .field("digit", &self.digit)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("numbers", &self.numbers)
            .finish_non_exhaustive()
    }
}

/// Plain signal settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalInput {
    pub text: String,
    pub dtmf: String,
    pub window_s: u64,
    pub separate_digit: bool,
}

impl Default for SignalInput {
    fn default() -> Self {
        SignalInput {
            text: "MAINTAIN-{digit}".into(),
            // The keypad spelling of MAINTAIN (DESIGN.md step 3).
            dtmf: "*62468246*{digit}#".into(),
            window_s: 120,
            separate_digit: false,
        }
    }
}

/// Plain callback settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackInput {
    pub delay_s: u64,
    pub ring_timeout_s: u64,
    pub max_per_admin_per_hour: u64,
    pub on_diversion: OnDiversion,
}

impl Default for CallbackInput {
    fn default() -> Self {
        CallbackInput {
            delay_s: 5,
            ring_timeout_s: 45,
            max_per_admin_per_hour: 3,
            on_diversion: OnDiversion::Abort,
        }
    }
}

/// Plain security settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityInput {
    pub tries_per_call: u64,
    pub max_failures: u64,
    pub failure_window_s: u64,
    pub lock_s: u64,
    pub per_source_max_failures: u64,
    pub nonce_ttl_s: u64,
}

impl Default for SecurityInput {
    fn default() -> Self {
        SecurityInput {
            tries_per_call: 3,
            max_failures: 5,
            failure_window_s: 900,
            lock_s: 900,
            per_source_max_failures: 10,
            nonce_ttl_s: 300,
        }
    }
}

impl Policy {
    /// Validates every value; the result is the only way to hold a [`Policy`].
    pub fn parse(input: PolicyInput) -> Result<Self, GateError> {
        let realm = input.realm;
        if realm.is_empty()
            || realm.len() > MAX_REALM_LEN
            || !realm.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        {
            return Err(GateError::BadRealm {
                value: realm.chars().take(MAX_REALM_LEN).collect(),
                max: MAX_REALM_LEN,
            });
        }
        if input.admins.is_empty() {
            return Err(GateError::NoAdmins);
        }
        if input.admins.len() > MAX_ADMINS {
            return Err(GateError::TooManyAdmins {
                count: input.admins.len(),
                max: MAX_ADMINS,
            });
        }
        let mut admins: Vec<Admin> = Vec::with_capacity(input.admins.len());
        for a in &input.admins {
            let admin = parse_admin(a, &realm)?;
            if admins.iter().any(|x| x.digit == admin.digit) {
                return Err(GateError::DuplicateDigit {
                    digit: admin.digit.0,
                });
            }
            if admins.iter().any(|x| x.id == admin.id) {
                return Err(GateError::DuplicateId {
                    id: admin.id.0.clone(),
                });
            }
            admins.push(admin);
        }

        let s = &input.signal;
        let signal = SignalPolicy {
            text: SignalPattern::parse(&s.text, PatternKind::Text)?,
            dtmf: SignalPattern::parse(&s.dtmf, PatternKind::Dtmf)?,
            window_s: range("signal.window_s", s.window_s, 10, 3600)?,
            separate_digit: s.separate_digit,
        };
        let c = &input.callback;
        let callback = CallbackPolicy {
            delay_s: range("callback.delay_s", c.delay_s, 0, 300)?,
            ring_timeout_s: range("callback.ring_timeout_s", c.ring_timeout_s, 5, 300)?,
            max_per_admin_per_hour: range_u32(
                "callback.max_per_admin_per_hour",
                c.max_per_admin_per_hour,
                1,
                60,
            )?,
            on_diversion: c.on_diversion,
        };
        let x = &input.security;
        let security = SecurityPolicy {
            tries_per_call: range_u32("security.tries_per_call", x.tries_per_call, 1, 10)?,
            max_failures: range_u32("security.max_failures", x.max_failures, 1, 1000)?,
            failure_window_s: range("security.failure_window_s", x.failure_window_s, 1, 86_400)?,
            lock_s: range("security.lock_s", x.lock_s, 1, 7 * 86_400)?,
            per_source_max_failures: range_u32(
                "security.per_source_max_failures",
                x.per_source_max_failures,
                1,
                100_000,
            )?,
            nonce_ttl_s: range("security.nonce_ttl_s", x.nonce_ttl_s, 5, 3600)?,
        };
        let digest_algorithms = parse_algorithms(&input.digest_algorithms)?;
        let dummy_pin_hash = dummy_hash_like(admins.iter().find_map(|a| a.pin_hash.as_deref()));
        Ok(Policy {
            realm,
            admins,
            signal,
            callback,
            security,
            digest_algorithms,
            dummy_pin_hash,
        })
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }
    pub fn admins(&self) -> &[Admin] {
        &self.admins
    }
    pub fn admin_by_id(&self, id: &str) -> Option<&Admin> {
        self.admins.iter().find(|a| a.id.0 == id)
    }
    pub fn admin_by_digit(&self, digit: AdminDigit) -> Option<&Admin> {
        self.admins.iter().find(|a| a.digit == digit)
    }
    pub fn signal(&self) -> &SignalPolicy {
        &self.signal
    }
    pub fn callback(&self) -> &CallbackPolicy {
        &self.callback
    }
    pub fn security(&self) -> &SecurityPolicy {
        &self.security
    }
    /// Digest algorithms to challenge with, in order (before filtering by the HA1s held).
    pub fn digest_algorithms(&self) -> &[Algorithm] {
        &self.digest_algorithms
    }
    /// A PHC string with the same argon2 parameters as the first administrator's PIN hash and
    /// a salt/hash no PIN can match: verified for unknown IDs so timing does not tell whether
    /// an ID exists.
    pub fn dummy_pin_hash(&self) -> &str {
        &self.dummy_pin_hash
    }
}

fn parse_admin(a: &AdminInput, realm: &str) -> Result<Admin, GateError> {
    let digit = AdminDigit::new(a.digit)?;
    let id = AdminId::parse(&a.id)?;
    let who = || id.0.clone();
    let name_chars = a.name.chars().count();
    if name_chars == 0 || name_chars > MAX_NAME_CHARS || a.name.chars().any(char::is_control) {
        return Err(GateError::BadName {
            admin: who(),
            max: MAX_NAME_CHARS,
        });
    }
    if a.numbers.is_empty() || a.numbers.len() > MAX_NUMBERS {
        return Err(GateError::NumberCount {
            admin: who(),
            count: a.numbers.len(),
            max: MAX_NUMBERS,
        });
    }
    let numbers = a
        .numbers
        .iter()
        .map(|n| {
            CallbackNumber::parse(n).ok_or_else(|| GateError::BadNumber {
                admin: who(),
                value: n.chars().take(MAX_URI_LEN).collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pin_hash = match &a.pin_hash {
        None => None,
        Some(h) if valid_argon2id(h) => Some(h.clone()),
        Some(_) => return Err(GateError::BadPinHash { admin: who() }),
    };
    let ha1_field = |v: &Option<String>, algorithm: &'static str, len: usize| match v {
        None => Ok(None),
        Some(h) if h.len() == len && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(Some(h.clone()))
        }
        Some(_) => Err(GateError::BadHa1 {
            admin: who(),
            algorithm,
            len,
        }),
    };
    let md5 = ha1_field(&a.ha1_md5, "MD5", 32)?;
    let sha256 = ha1_field(&a.ha1_sha256, "SHA-256", 64)?;
    let ha1 = (md5.is_some() || sha256.is_some()).then_some(DigestHa1 { md5, sha256 });
    if let (Some(_), Some(r)) = (&ha1, &a.ha1_realm) {
        if r != realm {
            return Err(GateError::RealmMismatch {
                admin: who(),
                realm: r.clone(),
                expected: realm.to_owned(),
            });
        }
    }
    if pin_hash.is_none() && ha1.is_none() {
        return Err(GateError::NoCredentials { admin: who() });
    }
    Ok(Admin {
        digit,
        id,
        name: a.name.clone(),
        numbers,
        pin_hash,
        ha1,
    })
}

fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, GateError> {
    if names.is_empty() {
        return Ok(vec![Algorithm::Sha256, Algorithm::Md5]);
    }
    let mut algs = Vec::with_capacity(names.len());
    for n in names {
        let alg = Algorithm::parse(n).map_err(|_| GateError::BadAlgorithm {
            value: n.chars().take(32).collect(),
        })?;
        if algs.contains(&alg) {
            return Err(GateError::BadAlgorithm {
                value: n.chars().take(32).collect(),
            });
        }
        algs.push(alg);
    }
    Ok(algs)
}

fn range(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, GateError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(GateError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

fn range_u32(field: &'static str, value: u64, min: u32, max: u32) -> Result<u32, GateError> {
    let v = range(field, value, u64::from(min), u64::from(max))?;
    // In range of a u32 by the check just made.
    u32::try_from(v).map_err(|_| GateError::OutOfRange {
        field,
        value,
        min: u64::from(min),
        max: u64::from(max),
    })
}

fn valid_argon2id(phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    hash.algorithm.as_str() == "argon2id"
        && hash.salt.is_some()
        && hash.hash.is_some()
        && argon2::Params::try_from(&hash).is_ok()
}

/// A PHC string with `like`'s argon2 parameters, an all-zero salt and an all-zero hash.
fn dummy_hash_like(like: Option<&str>) -> String {
    let params = like
        .and_then(|p| PasswordHash::new(p).ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    // 16 zero bytes and 32 zero bytes in unpadded B64 (PHC string format).
    format!(
        "$argon2id$v=19$m={},t={},p={}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        params.m_cost(),
        params.t_cost(),
        params.p_cost()
    )
}

/// RFC 3261 §19.1 SIP/SIPS URI or RFC 3966 tel URI, checked for shape, not resolvability.
fn valid_uri(value: &str) -> bool {
    if value.is_empty()
        || value.len() > MAX_URI_LEN
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return false;
    }
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let addr = rest.split([';', '?']).next().unwrap_or("");
        let host = match addr.rsplit_once('@') {
            Some((user, host)) if !user.is_empty() => host,
            Some(_) => return false,
            None => addr,
        };
        !host.is_empty() && !host.starts_with(':')
    } else if scheme.eq_ignore_ascii_case("tel") {
        let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
        let digits = number.chars().filter(char::is_ascii_digit).count();
        let (global, body) = match number.strip_prefix('+') {
            Some(b) => (true, b),
            None => (false, number),
        };
        let shape = digits >= 3
            && body
                .chars()
                .all(|c| c.is_ascii_digit() || "-.()".contains(c));
        // RFC 3966 §5.1.5: a local number needs a phone-context.
        shape && (global || params.to_ascii_lowercase().contains("phone-context="))
    } else {
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// argon2id of PIN "4321" with small parameters (m=64,t=1,p=1), to keep tests fast.
    pub(crate) const TEST_PIN_HASH: &str =
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$cKqynazHVS4DvlvnXl16KmP360pw6KHGtemFQRUMDrk";

    pub(crate) fn admin_input(digit: u8, id: &str) -> AdminInput {
        AdminInput {
            digit,
            id: id.into(),
            name: format!("admin {id}"),
            numbers: vec!["sip:desk@pbx.example".into(), "tel:+81-3-1234-5678".into()],
            pin_hash: Some(TEST_PIN_HASH.into()),
            ha1_realm: Some("dialback".into()),
            ha1_md5: Some(crate::sip::digest::ha1_hex(
                crate::sip::digest::Algorithm::Md5,
                id,
                "dialback",
                "pw",
            )),
            ha1_sha256: Some(crate::sip::digest::ha1_hex(
                crate::sip::digest::Algorithm::Sha256,
                id,
                "dialback",
                "pw",
            )),
        }
    }

    pub(crate) fn input() -> PolicyInput {
        PolicyInput {
            realm: "dialback".into(),
            admins: vec![admin_input(1, "1001"), admin_input(2, "1002")],
            signal: SignalInput::default(),
            callback: CallbackInput::default(),
            security: SecurityInput::default(),
            digest_algorithms: Vec::new(),
        }
    }

    pub(crate) fn policy() -> Policy {
        Policy::parse(input()).unwrap()
    }

    #[test]
    fn default_policy_parses() {
        let p = policy();
        assert_eq!(p.admins().len(), 2);
        let a = p.admin_by_digit(AdminDigit::new(2).unwrap()).unwrap();
        assert_eq!(a.id().as_str(), "1002");
        assert_eq!(a.numbers()[0].as_str(), "sip:desk@pbx.example");
        assert!(p
            .dummy_pin_hash()
            .starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(valid_argon2id(p.dummy_pin_hash()));
    }

    #[test]
    fn invalid_policies_are_refused() {
        type Mutate = fn(&mut PolicyInput);
        type Check = fn(&GateError) -> bool;
        let cases: &[(Mutate, Check)] = &[
            (|i| i.admins.clear(), |e| *e == GateError::NoAdmins),
            (
                |i| i.admins[1].digit = 1,
                |e| *e == GateError::DuplicateDigit { digit: 1 },
            ),
            (
                |i| i.admins[1].id = "1001".into(),
                |e| matches!(e, GateError::DuplicateId { .. }),
            ),
            (
                |i| i.admins[0].digit = 10,
                |e| *e == GateError::DigitOutOfRange { value: 10 },
            ),
            (
                |i| i.admins[0].id = "12a".into(),
                |e| matches!(e, GateError::BadAdminId { .. }),
            ),
            (
                |i| i.admins[0].numbers = vec!["+81312345678".into()],
                |e| matches!(e, GateError::BadNumber { .. }),
            ),
            (
                |i| i.admins[0].numbers.clear(),
                |e| matches!(e, GateError::NumberCount { .. }),
            ),
            (
                |i| i.admins[0].pin_hash = Some("$argon2i$v=19$m=64,t=1,p=1$c2FsdA$AAAA".into()),
                |e| matches!(e, GateError::BadPinHash { .. }),
            ),
            (
                |i| i.admins[0].ha1_md5 = Some("ABC".into()),
                |e| matches!(e, GateError::BadHa1 { .. }),
            ),
            (
                |i| {
                    let a = &mut i.admins[0];
                    a.pin_hash = None;
                    a.ha1_md5 = None;
                    a.ha1_sha256 = None;
                },
                |e| matches!(e, GateError::NoCredentials { .. }),
            ),
            (
                |i| i.admins[0].ha1_realm = Some("other".into()),
                |e| matches!(e, GateError::RealmMismatch { .. }),
            ),
            (
                |i| i.signal.text = "MAINTAIN".into(),
                |e| matches!(e, GateError::BadPattern { .. }),
            ),
            (
                |i| i.signal.dtmf = "*62{digit}x#".into(),
                |e| matches!(e, GateError::BadPattern { .. }),
            ),
            (
                |i| i.signal.dtmf = "{digit}{digit}#".into(),
                |e| matches!(e, GateError::BadPattern { .. }),
            ),
            (
                |i| i.signal.dtmf = "{digit}#".into(),
                |e| matches!(e, GateError::BadPattern { .. }),
            ),
            (
                |i| i.signal.window_s = 0,
                |e| {
                    matches!(
                        e,
                        GateError::OutOfRange {
                            field: "signal.window_s",
                            ..
                        }
                    )
                },
            ),
            (
                |i| i.security.tries_per_call = u64::MAX,
                |e| matches!(e, GateError::OutOfRange { .. }),
            ),
            (
                |i| i.realm.clear(),
                |e| matches!(e, GateError::BadRealm { .. }),
            ),
        ];
        for (i, (mutate, check)) in cases.iter().enumerate() {
            let mut input = input();
            mutate(&mut input);
            let err = Policy::parse(input).unwrap_err();
            assert!(check(&err), "case {i}: {err:?}");
        }
    }

    #[test]
    fn callback_numbers_must_be_sip_or_tel_uris() {
        for ok in [
            "sip:alice@pbx.example",
            "sips:alice@pbx.example:5061;transport=tls",
            "sip:+81312345678@gw.example;user=phone",
            "tel:+81-3-1234-5678",
            "tel:1234;phone-context=example.com",
        ] {
            assert!(CallbackNumber::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "alice@pbx",
            "http://x",
            "sip:",
            "sip:@host",
            "sip:alice@",
            "sip:a b@host",
            "tel:12",
            "tel:1234",
            "tel:+81x",
            "sip:<a@b>",
        ] {
            assert!(CallbackNumber::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_exactly_one_digit() {
        let p = SignalPattern::parse("*62468246*{digit}#", PatternKind::Dtmf).unwrap();
        assert_eq!(p.match_with_digit("*62468246*3#"), AdminDigit::new(3).ok());
        assert_eq!(p.match_with_digit("*62468246*#"), None);
        assert_eq!(p.match_with_digit("*62468246*33#"), None);
        assert_eq!(p.match_with_digit("*62468246*x#"), None);
        assert!(p.match_without_digit("*62468246*#"));
        assert!(!p.match_without_digit("*62468246*3#"));
        assert!(p.could_match("*6246", false));
        assert!(p.could_match("*62468246*7", false));
        assert!(!p.could_match("*62468246*7*", false));
        assert!(!p.could_match("*62468246**", false));
        assert!(!p.could_match("#", false));
        assert!(p.could_match("*62468246*#", true));
        assert!(!p.could_match("*62468246*1", true));
        assert_eq!(p.max_len(), 12);
    }

    #[test]
    fn debug_output_holds_no_credentials() {
        let p = policy();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("argon2id$v=19$m=64,t=1,p=1$c2Fsd"));
        let ha1 = p.admins()[0].ha1().unwrap().md5().unwrap().to_owned();
        assert!(!dbg.contains(&ha1));
        assert!(!format!("{:?}", admin_input(1, "1001")).contains(&ha1));
    }

    #[test]
    fn policy_input_deserialises_with_defaults() {
        let json = r#"{"realm":"dialback","admins":[{"digit":3,"id":"42","name":"Ann",
            "numbers":["sip:ann@pbx"],"ha1_sha256":
            " 000000000000000000000000000000000000000000000000000000000000000"}]}"#;
        // The HA1 above starts with a space: refused.
        let input: PolicyInput = serde_json::from_str(json).unwrap();
        assert!(matches!(
            Policy::parse(input),
            Err(GateError::BadHa1 { .. })
        ));
        let json = json.replace("\" 0", "\"00");
        let p = Policy::parse(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(p.signal().window_s(), 120);
        assert_eq!(p.security().max_failures(), 5);
        assert_eq!(p.callback().on_diversion(), OnDiversion::Abort);
    }
}
