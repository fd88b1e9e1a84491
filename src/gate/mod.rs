//! The maintenance gate: authentication steps, start-signal matching, decisions, lockout and
//! rate state, and audit records (DESIGN.md "The flow", steps 2–4; JP H11-053315 claims 1, 2
//! and 5, \[0011\], \[0015\], \[0031\]).
//!
//! Everything here is pure: no clock reads (wall time comes in as [`WallTime`], call time as
//! `Instant`), no sockets, no files, no spawning; randomness is injected. The runtime does the
//! IO: it persists [`decide::GateState`], writes [`audit::AuditRecord`] lines, and runs the
//! argon2 PIN check off the reactor when [`signal::CallFlow`] asks for it.
//!
//! | module   | owns                                                                    |
//! |----------|-------------------------------------------------------------------------|
//! | `policy` | the validated policy: administrators, signal patterns, limits           |
//! | `nonce`  | stateless HMAC nonces, replay table, 401 challenges, MESSAGE digest auth |
//! | `pin`    | argon2id PIN check with equal timing for unknown IDs, secret hashing    |
//! | `signal` | MESSAGE body matching and the DTMF call flow state machine              |
//! | `decide` | the total decision function and its persistent counters                 |
//! | `audit`  | audit records as one JSON line each, with no room for secrets           |

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use thiserror::Error;

pub mod audit;
pub mod decide;
pub mod nonce;
pub mod pin;
pub mod policy;
pub mod signal;

/// Seconds since the Unix epoch, UTC, as read by the runtime. The gate never reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WallTime(pub u64);

impl WallTime {
    /// Seconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: WallTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus(self, secs: u64) -> WallTime {
        WallTime(self.0.saturating_add(secs))
    }
}

/// A secret string (PIN, password) that never prints and compares in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // Lengths are not hidden; contents are (subtle's slice comparison).
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl Eq for Secret {}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; only for the code that hashes or verifies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Errors of the gate layer. Policy errors are the operator's; hashing errors are API misuse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GateError {
    #[error("administrator digit {value} is not 0-9")]
    DigitOutOfRange { value: u8 },
    #[error("administrator ID {value:?} must be 1-{max} decimal digits")]
    BadAdminId { value: String, max: usize },
    #[error("administrator {admin}: name must be 1-{max} printable characters")]
    BadName { admin: String, max: usize },
    #[error("administrator {admin}: callback number {value:?} is not a sip:, sips: or tel: URI")]
    BadNumber { admin: String, value: String },
    #[error("administrator {admin}: {count} callback numbers, allowed 1-{max}")]
    NumberCount {
        admin: String,
        count: usize,
        max: usize,
    },
    #[error("administrator {admin}: PIN hash is not an argon2id PHC string")]
    BadPinHash { admin: String },
    #[error("administrator {admin}: {algorithm} HA1 must be {len} lower-case hex digits")]
    BadHa1 {
        admin: String,
        algorithm: &'static str,
        len: usize,
    },
    #[error("administrator {admin}: has neither a PIN hash nor a digest HA1")]
    NoCredentials { admin: String },
    #[error("administrator {admin}: digest realm {realm:?} differs from {expected:?}")]
    RealmMismatch {
        admin: String,
        realm: String,
        expected: String,
    },
    #[error("digest algorithm {value:?} is unknown or listed twice")]
    BadAlgorithm { value: String },
    #[error("digest realm {value:?} must be 1-{max} printable characters")]
    BadRealm { value: String, max: usize },
    #[error("administrator digit {digit} is used twice")]
    DuplicateDigit { digit: u8 },
    #[error("administrator ID {id} is used twice")]
    DuplicateId { id: String },
    #[error("no administrators configured")]
    NoAdmins,
    #[error("{count} administrators, at most {max}")]
    TooManyAdmins { count: usize, max: usize },
    #[error("signal pattern {pattern:?} is invalid: {problem}")]
    BadPattern {
        pattern: String,
        problem: &'static str,
    },
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("PIN must be {min}-{max} decimal digits")]
    BadPin { min: usize, max: usize },
    #[error("hashing failed: {detail}")]
    Hash { detail: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_and_compares_by_content() {
        let s = Secret::new("4321");
        assert_eq!(format!("{s:?}"), "REDACTED");
        assert_eq!(s, Secret::new("4321"));
        assert_ne!(s, Secret::new("4322"));
        assert_ne!(s, Secret::new("43210"));
    }

    #[test]
    fn wall_time_arithmetic_saturates() {
        assert_eq!(WallTime(5).since(WallTime(9)), 0);
        assert_eq!(WallTime(u64::MAX).plus(1), WallTime(u64::MAX));
    }
}
