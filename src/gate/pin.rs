//! DTMF PIN verification (argon2id, RFC 9106) and the secret-hashing helpers behind the
//! `dialback hash-secret` CLI.
//!
//! An unknown ID, or an administrator without a PIN, is verified against the policy's dummy
//! hash (same argon2 parameters), so the time taken does not tell whether an ID exists
//! (DESIGN.md step 2). argon2 costs tens of milliseconds by design: the runtime calls
//! [`verify_pin`] off the reactor (`signal::CallFlow` asks for it with an action). Pure: the
//! salt comes from an injected RNG, no clock, no IO.

use argon2::password_hash::rand_core::{CryptoRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::policy::{AdminId, Policy};
use super::{GateError, Secret};
use crate::sip::digest::{ha1_hex, Algorithm};

/// Shortest PIN accepted by [`hash_pin`].
pub const MIN_PIN_DIGITS: usize = 4;
/// Longest PIN accepted by [`hash_pin`] and collected by the call flow.
pub const MAX_PIN_DIGITS: usize = 16;

/// The administrator whose ID is `id` and whose PIN hash `pin` matches, or `None`.
///
/// Exactly one argon2 verification runs whatever the input, against the dummy hash when the
/// ID is unknown or has no PIN.
pub fn verify_pin(policy: &Policy, id: &str, pin: &Secret) -> Option<AdminId> {
    let admin = policy.admin_by_id(id);
    let (phc, real) = match admin.and_then(|a| a.pin_hash()) {
        Some(h) => (h, true),
        None => (policy.dummy_pin_hash(), false),
    };
    // Policy::parse validated every PHC string and built the dummy as a valid one; a parse
    // failure here would still only deny.
    let ok = PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(pin.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    match admin {
        Some(a) if ok && real => Some(a.id().clone()),
        _ => None,
    }
}

/// Hashes a DTMF PIN (4–16 decimal digits) as an argon2id PHC string with the RFC 9106 /
/// OWASP default parameters of the argon2 crate (m=19456 KiB, t=2, p=1).
pub fn hash_pin<R: RngCore + CryptoRng>(pin: &Secret, rng: &mut R) -> Result<String, GateError> {
    let p = pin.expose();
    if !(MIN_PIN_DIGITS..=MAX_PIN_DIGITS).contains(&p.len())
        || !p.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(GateError::BadPin {
            min: MIN_PIN_DIGITS,
            max: MAX_PIN_DIGITS,
        });
    }
    let salt = SaltString::generate(rng);
    Argon2::default()
        .hash_password(p.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| GateError::Hash {
            detail: e.to_string(),
        })
}

/// The MD5 and SHA-256 digest HA1 values (RFC 7616 §3.4.2) to store for `user` in `realm`.
pub fn digest_ha1s(user: &str, realm: &str, password: &Secret) -> (String, String) {
    (
        ha1_hex(Algorithm::Md5, user, realm, password.expose()),
        ha1_hex(Algorithm::Sha256, user, realm, password.expose()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::policy::tests::{policy, TEST_PIN_HASH};

    /// A deterministic RNG for salts in tests (not cryptographic; the trait is only a marker).
    struct CountingRng(u64);
    impl RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = (self.next_u64() >> 56) as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for CountingRng {}

    #[test]
    fn correct_pin_for_known_id_is_accepted() {
        let p = policy();
        assert_eq!(
            verify_pin(&p, "1001", &Secret::new("4321")).map(|a| a.as_str().to_owned()),
            Some("1001".to_owned())
        );
    }

    #[test]
    fn wrong_pin_unknown_id_and_dummy_are_refused() {
        let p = policy();
        assert_eq!(verify_pin(&p, "1001", &Secret::new("4322")), None);
        assert_eq!(verify_pin(&p, "9999", &Secret::new("4321")), None);
        assert_eq!(verify_pin(&p, "", &Secret::new("")), None);
        // The dummy hash itself accepts nothing sensible.
        for guess in ["", "0000", "4321"] {
            let h = PasswordHash::new(p.dummy_pin_hash()).unwrap();
            assert!(Argon2::default()
                .verify_password(guess.as_bytes(), &h)
                .is_err());
        }
    }

    #[test]
    fn hashed_pin_verifies_and_has_default_params() {
        let phc = hash_pin(&Secret::new("4321"), &mut CountingRng(7)).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let h = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"4321", &h).is_ok());
        assert!(Argon2::default().verify_password(b"4320", &h).is_err());
        assert!(hash_pin(&Secret::new("12a4"), &mut CountingRng(1)).is_err());
        assert!(hash_pin(&Secret::new("123"), &mut CountingRng(1)).is_err());
    }

    #[test]
    fn test_pin_hash_is_a_real_hash_of_4321() {
        let h = PasswordHash::new(TEST_PIN_HASH).unwrap();
        assert!(Argon2::default().verify_password(b"4321", &h).is_ok());
    }

    #[test]
    fn ha1s_match_the_digest_module() {
        let (md5, sha) = digest_ha1s(
            "Mufasa",
            "http-auth@example.org",
            &Secret::new("Circle of Life"),
        );
        assert_eq!(md5.len(), 32);
        assert_eq!(sha.len(), 64);
        assert_eq!(
            md5,
            ha1_hex(
                Algorithm::Md5,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life"
            )
        );
    }
}
