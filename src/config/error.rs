//! Errors and warnings of the config layer.
//!
//! DESIGN.md "Dialplan": a bad file gets an error that names the file, the line and column or
//! JSON path, and what is wrong. Syntax, type and unknown-key errors stop parsing (serde cannot
//! continue past them) and carry a line and column; semantic errors are all collected and carry
//! a JSON path.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use super::uri::UriError;
use super::wav::WavError;

/// Everything wrong with one dialplan file. Display prints one error per line.
#[derive(Debug)]
pub struct ConfigErrors {
    /// The file name as given to `load`/`parse`.
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

/// One thing wrong with a dialplan.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON.
    #[error("{message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed JSON of the wrong shape: unknown key, wrong type, missing required key,
    /// unknown enum name.
    #[error("at {path}: {message}")]
    Shape {
        line: usize,
        column: usize,
        path: String,
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("at {path}: {problem}")]
    Invalid { path: String, problem: Problem },
}

/// Why a value is not acceptable.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("{value:?} is not a socket address (IPv4:port or [IPv6]:port)")]
    NotSocketAddr { value: String },
    #[error(
        "{addr} is a wildcard address: set advertise to the address the PBX reaches this trunk at"
    )]
    WildcardNeedsAdvertise { addr: String },
    #[error("advertise {addr} must be a concrete address, not a wildcard")]
    WildcardAdvertise { addr: String },
    #[error("listen address {addr} is also used by {other}")]
    DuplicateListen { addr: String, other: String },
    #[error("{value:?} is not a valid URI: {reason}")]
    BadUri { value: String, reason: UriError },
    #[error("required when register is true")]
    RegistrarRequired,
    #[error("{value} is below the minimum {min}")]
    TooSmall { value: i64, min: i64 },
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("give at most one of password, password_env, password_file")]
    ConflictingPasswordSources,
    #[error("auth_username is set but no password, password_env or password_file")]
    MissingPassword,
    #[error("environment variable {var} is not set")]
    EnvUnset { var: String },
    #[error("cannot read password file {}: {reason}", path.display())]
    PasswordFile { path: PathBuf, reason: String },
    #[error("password file {} is empty", path.display())]
    EmptyPasswordFile { path: PathBuf },
    #[error("proxy host {host:?} is not an IP literal; list allow_sources explicitly")]
    AllowSourcesNeeded { host: String },
    #[error("digit {digit} is outside 0..=9")]
    DigitOutOfRange { digit: i64 },
    #[error("digit {digit} is also used by {other}")]
    DuplicateDigit { digit: u8, other: String },
    #[error("id {id:?} is also used by {other}")]
    DuplicateId { id: String, other: String },
    #[error("must not be empty")]
    Empty,
    #[error("must be an argon2id PHC hash starting with $argon2id$ (never a plaintext PIN)")]
    PinNotArgon2id,
    #[error("must be {len} lowercase hex digits (a hash, never a plaintext password)")]
    BadHa1 { len: usize },
    #[error("at least one of ha1_md5 and ha1_sha256 is required")]
    NoHa1,
    #[error("pattern must contain {{digit}} unless separate_digit is true")]
    MissingDigitPlaceholder,
    #[error("pattern contains {{digit}} but separate_digit is true")]
    UnexpectedDigitPlaceholder,
    #[error("pattern contains {{digit}} {count} times; exactly once is allowed")]
    RepeatedDigitPlaceholder { count: usize },
    #[error("DTMF pattern character {ch:?} is not one of 0-9 * # A-D")]
    BadDtmfChar { ch: char },
    #[error("reject code {code} is not a 4xx or 6xx final response")]
    BadRejectCode { code: u16 },
    #[error("{value:?} is neither \"console\" nor \"tcp:HOST:PORT\"")]
    BadModemTarget { value: String },
    #[error("modulation {name} is listed twice")]
    DuplicateModulation { name: String },
    #[error("digest algorithm {name:?} is not one of SHA-256, MD5, SHA-256-sess, MD5-sess, or is listed twice")]
    BadDigestAlgorithm { name: String },
    #[error("low port {low} must be even and below high port {high}")]
    BadPortRange { low: u16, high: u16 },
    #[error("{value} must not be below {other} ({min})")]
    BelowOther {
        value: i64,
        other: &'static str,
        min: i64,
    },
    #[error("prompt {} cannot be read: {reason}", path.display())]
    PromptUnreadable { path: PathBuf, reason: String },
    #[error("prompt {} is not usable: {reason}", path.display())]
    PromptFormat { path: PathBuf, reason: WavError },
    #[error("prompt name {name:?} is not one of {}", crate::config::PROMPT_NAMES.join(", "))]
    UnknownPromptName { name: String },
}

/// Something accepted but worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigWarning {
    #[error("inline password in {path}; prefer password_env or password_file")]
    InlinePassword { path: String },
    #[error("{path} is set but register is false, so it is unused")]
    UnusedRegistrar { path: String },
    #[error("{path} is {realm:?} but the gate challenges with security.realm {challenge_realm:?}; these HA1 values can never verify")]
    RealmMismatch {
        path: String,
        realm: String,
        challenge_realm: String,
    },
    #[error(
        "{path} has characters other than 0-9 * # A-D, so it cannot be entered by DTMF on a call"
    )]
    IdNotDialable { path: String },
}

impl ConfigErrors {
    pub(crate) fn one(source_name: &str, error: ConfigError) -> Self {
        Self {
            source_name: source_name.to_owned(),
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e {
                ConfigError::Syntax { line, column, .. }
                | ConfigError::Shape { line, column, .. } => {
                    write!(f, "{}:{line}:{column}: {e}", self.source_name)?
                }
                ConfigError::Read { .. } | ConfigError::Invalid { .. } => {
                    write!(f, "{}: {e}", self.source_name)?
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
