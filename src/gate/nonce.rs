//! Server nonces and digest authentication of SIP MESSAGE (DESIGN.md step 2; RFC 3261 §22.4,
//! RFC 7616 §3.3–3.5, RFC 8760 §2.4).
//!
//! Nonces are stateless: `hex(time ‖ random ‖ HMAC-SHA256(key, time ‖ random)[..16])`, so any
//! nonce can be checked without a table and an expired one is answered with `stale=true`
//! (RFC 7616 §3.3). Replay is stopped by a bounded table of the highest nonce count seen per
//! nonce, filled only after a response verified, so an unauthenticated peer cannot grow it.
//! Identity comes only from the digest username, never from From or P-Asserted-Identity.
//! Pure: the key, time and RNG are passed in.

use std::collections::HashMap;
use std::fmt;

use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use rand_core::RngCore;
use sha2::Sha256;

use super::policy::{AdminId, Policy};
use super::WallTime;
use crate::sip::digest::{self, Algorithm};

const TIME_BYTES: usize = 8;
const RANDOM_BYTES: usize = 16;
const MAC_BYTES: usize = 16;
const NONCE_BYTES: usize = TIME_BYTES + RANDOM_BYTES + MAC_BYTES;
/// A nonce stamped this far in the future is still accepted (runtime clock steps).
const FUTURE_SKEW_S: u64 = 5;
/// Default bound of the replay table.
pub const REPLAY_TABLE_CAP: usize = 4096;

/// The HMAC key for nonces. The runtime draws it from its RNG at start (or persists it).
#[derive(Clone)]
pub struct NonceKey(Hmac<Sha256>);

impl NonceKey {
    pub fn new(secret: [u8; 32]) -> Self {
        // RFC 2104 §2: a key shorter than the block size is zero-padded to it; padding here
        // makes the key length the type's fixed 64 bytes, so construction cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&secret);
        NonceKey(<Hmac<Sha256> as hmac::digest::KeyInit>::new(
            GenericArray::from_slice(&block),
        ))
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut m = self.0.clone();
        m.update(data);
        m
    }
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(REDACTED)")
    }
}

/// What a received nonce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    /// Ours and within its lifetime.
    Fresh { issued: WallTime },
    /// Ours but expired: challenge again with `stale=true` (RFC 7616 §3.3).
    Stale,
    /// Not ours (bad MAC, bad shape, or from the future).
    Invalid,
}

/// Issues a nonce stamped `now`.
pub fn issue_nonce<R: RngCore>(key: &NonceKey, now: WallTime, rng: &mut R) -> String {
    let mut raw = [0u8; NONCE_BYTES];
    raw[..TIME_BYTES].copy_from_slice(&now.0.to_be_bytes());
    rng.fill_bytes(&mut raw[TIME_BYTES..TIME_BYTES + RANDOM_BYTES]);
    let tag = key
        .mac(&raw[..TIME_BYTES + RANDOM_BYTES])
        .finalize()
        .into_bytes();
    raw[TIME_BYTES + RANDOM_BYTES..].copy_from_slice(&tag[..MAC_BYTES]);
    hex(&raw)
}

/// Checks a nonce's MAC (constant time) and age against `ttl_s`.
pub fn check_nonce(key: &NonceKey, nonce: &str, now: WallTime, ttl_s: u64) -> NonceStatus {
    let Some(raw) = unhex::<NONCE_BYTES>(nonce) else {
        return NonceStatus::Invalid;
    };
    let (signed, tag) = raw.split_at(TIME_BYTES + RANDOM_BYTES);
    if key.mac(signed).verify_truncated_left(tag).is_err() {
        return NonceStatus::Invalid;
    }
    let mut ts = [0u8; TIME_BYTES];
    ts.copy_from_slice(&signed[..TIME_BYTES]);
    let issued = WallTime(u64::from_be_bytes(ts));
    if issued > now.plus(FUTURE_SKEW_S) {
        NonceStatus::Invalid
    } else if now.since(issued) > ttl_s {
        NonceStatus::Stale
    } else {
        NonceStatus::Fresh { issued }
    }
}

/// The `WWW-Authenticate` values for a 401: SHA-256 first, then MD5 for older user agents
/// (RFC 8760 §2.4: the server lists its preferred algorithm first). Both offer
/// `qop="auth,auth-int"`; auth-int binds the start signal in the body to the credentials.
pub fn challenge_values(realm: &str, nonce: &str, stale: bool) -> [String; 2] {
    [
        challenge_value(realm, nonce, Algorithm::Sha256, stale),
        challenge_value(realm, nonce, Algorithm::Md5, stale),
    ]
}

/// The 401 challenges for `policy`: one per configured algorithm, in the configured order,
/// that some administrator has an HA1 for ([`offered_algorithms`]). Offering an algorithm no
/// HA1 can verify would only make a user agent fail.
pub fn challenges(policy: &Policy, nonce: &str, stale: bool) -> Vec<String> {
    offered_algorithms(policy)
        .into_iter()
        .map(|alg| challenge_value(policy.realm(), nonce, alg, stale))
        .collect()
}

/// The policy's digest algorithms (default SHA-256 then MD5) that it can verify: `-sess`
/// variants use the same stored HA1 as their base algorithm. Empty if every administrator
/// uses DTMF PINs only (then answer 403, not 401).
pub fn offered_algorithms(policy: &Policy) -> Vec<Algorithm> {
    let has = |f: fn(&super::policy::DigestHa1) -> Option<&str>| {
        policy
            .admins()
            .iter()
            .any(|a| a.ha1().and_then(f).is_some())
    };
    let (md5, sha256) = (has(|h| h.md5()), has(|h| h.sha256()));
    policy
        .digest_algorithms()
        .iter()
        .copied()
        .filter(|alg| match alg {
            Algorithm::Md5 | Algorithm::Md5Sess => md5,
            Algorithm::Sha256 | Algorithm::Sha256Sess => sha256,
        })
        .collect()
}

/// One challenge value for `alg`.
pub fn challenge_value(realm: &str, nonce: &str, alg: Algorithm, stale: bool) -> String {
    let mut v = format!(
        "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth,auth-int\"",
        escape(realm),
        nonce,
        alg.as_str()
    );
    if stale {
        v.push_str(", stale=true");
    }
    v
}

/// Why a replay check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    /// This (nonce, nc) or a later nc for the nonce was already accepted.
    Replayed,
    /// The table is full of unexpired nonces.
    TableFull,
}

/// Highest accepted nonce count per nonce, bounded (RFC 7616 §3.4: the server checks that nc
/// grows to detect replays).
#[derive(Debug, Clone)]
pub struct ReplayTable {
    seen: HashMap<String, (u32, WallTime)>,
    cap: usize,
}

impl ReplayTable {
    pub fn new(cap: usize) -> Self {
        ReplayTable {
            seen: HashMap::new(),
            cap,
        }
    }

    /// Accepts `nc` for `nonce` only if it exceeds every nc accepted before for it, and
    /// records it. Expired entries are pruned when the table is full; if it is still full,
    /// the request is refused rather than an unexpired entry forgotten.
    pub fn check_and_record(
        &mut self,
        nonce: &str,
        issued: WallTime,
        nc: u32,
        now: WallTime,
        ttl_s: u64,
    ) -> Result<(), ReplayRefusal> {
        if let Some((highest, _)) = self.seen.get_mut(nonce) {
            if nc <= *highest {
                return Err(ReplayRefusal::Replayed);
            }
            *highest = nc;
            return Ok(());
        }
        if self.seen.len() >= self.cap {
            self.seen
                .retain(|_, (_, issued)| now.since(*issued) <= ttl_s);
            if self.seen.len() >= self.cap {
                return Err(ReplayRefusal::TableFull);
            }
        }
        self.seen.insert(nonce.to_owned(), (nc, issued));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Why MESSAGE credentials were rejected (for the audit reason; never the credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Malformed,
    WrongRealm,
    WrongUri,
    /// RFC 2069 form without qop: no nonce count, so no replay protection.
    NoQop,
    UnknownUser,
    /// The algorithm used is not one the policy offers (no downgrade to an unoffered one).
    AlgorithmNotOffered,
    /// The administrator has no HA1 stored for the algorithm used.
    NoCredentialForAlgorithm,
    BadResponse,
    Replayed,
    ReplayTableFull,
}

/// The outcome of authenticating one MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageAuth {
    /// The digest verified: this is who sent it.
    Authenticated(AdminId),
    /// Answer 401 with [`challenges`] (fresh nonce), `stale` as given. Not a failure.
    Challenge { stale: bool },
    /// Answer 403. `claimed` is the administrator named by a well-formed username, for
    /// lockout counting; `None` if no administrator has that ID.
    Rejected {
        claimed: Option<AdminId>,
        failure: AuthFailure,
    },
}

/// Where a MESSAGE's digest check takes its inputs from.
#[derive(Debug, Clone, Copy)]
pub struct MessageRequest<'a> {
    /// The `Authorization` header value, if any.
    pub authorization: Option<&'a str>,
    pub method: &'a str,
    /// The Request-URI as received; the credential's `uri` must equal it (RFC 3261 §22.4).
    pub request_uri: &'a str,
    pub body: &'a [u8],
}

/// Authenticates a MESSAGE against the policy's digest HA1 values.
pub fn authenticate_message(
    policy: &Policy,
    key: &NonceKey,
    replay: &mut ReplayTable,
    req: &MessageRequest<'_>,
    now: WallTime,
) -> MessageAuth {
    let reject = |claimed, failure| MessageAuth::Rejected { claimed, failure };
    let Some(value) = req.authorization else {
        return MessageAuth::Challenge { stale: false };
    };
    let Ok(auth) = digest::parse_authorization(value) else {
        return reject(None, AuthFailure::Malformed);
    };
    let ttl = policy.security().nonce_ttl_s();
    let issued = match check_nonce(key, &auth.nonce, now, ttl) {
        NonceStatus::Fresh { issued } => Some(issued),
        // Checked below: stale=true only for a correct response (RFC 2617 §3.2.1), and a
        // wrong one with an old nonce is a counted failure, so an expired nonce is no
        // uncounted password oracle.
        NonceStatus::Stale => None,
        // Perhaps a nonce from before a key change: challenge again. A guess needs one of
        // our nonces, and failures are counted there.
        NonceStatus::Invalid => return MessageAuth::Challenge { stale: false },
    };
    let admin = policy.admin_by_id(&auth.username);
    let claimed = admin.map(|a| a.id().clone());
    if auth.realm != policy.realm() {
        return reject(claimed, AuthFailure::WrongRealm);
    }
    if auth.uri != req.request_uri {
        return reject(claimed, AuthFailure::WrongUri);
    }
    let (Some(_), Some(nc)) = (auth.qop, auth.nc) else {
        return reject(claimed, AuthFailure::NoQop);
    };
    if !policy.digest_algorithms().contains(&auth.algorithm) {
        return reject(claimed, AuthFailure::AlgorithmNotOffered);
    }
    let Some(admin) = admin else {
        return reject(None, AuthFailure::UnknownUser);
    };
    let ha1 = admin.ha1().and_then(|h| match auth.algorithm {
        Algorithm::Md5 | Algorithm::Md5Sess => h.md5(),
        Algorithm::Sha256 | Algorithm::Sha256Sess => h.sha256(),
    });
    let Some(ha1) = ha1 else {
        return reject(claimed, AuthFailure::NoCredentialForAlgorithm);
    };
    if !digest::verify(&auth, ha1, req.method, req.body) {
        return reject(claimed, AuthFailure::BadResponse);
    }
    let Some(issued) = issued else {
        return MessageAuth::Challenge { stale: true };
    };
    match replay.check_and_record(&auth.nonce, issued, nc, now, ttl) {
        Ok(()) => MessageAuth::Authenticated(admin.id().clone()),
        Err(ReplayRefusal::Replayed) => reject(claimed, AuthFailure::Replayed),
        Err(ReplayRefusal::TableFull) => reject(claimed, AuthFailure::ReplayTableFull),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let &[hi, lo] = pair else {
            return None;
        };
        *o = (nibble(hi)? << 4) | nibble(lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::policy::tests::policy;
    use crate::sip::digest::{authorization, parse_challenge, ClientCredentials, ResponseParams};

    struct SeqRng(u8);
    impl RngCore for SeqRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for d in dest {
                self.0 = self.0.wrapping_add(37);
                *d = self.0;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    const URI: &str = "sip:admin@gate.example";

    fn key() -> NonceKey {
        NonceKey::new([7; 32])
    }

    fn signed_message(challenge: &str, user: &str, password: &str, nc: u32, body: &[u8]) -> String {
        let ch = parse_challenge(challenge).unwrap();
        authorization(
            &ch,
            &ClientCredentials {
                username: user,
                password,
            },
            &ResponseParams {
                method: "MESSAGE",
                uri: URI,
                body,
                nc,
                cnonce: "cn",
            },
        )
    }

    fn req<'a>(auth: Option<&'a str>, body: &'a [u8]) -> MessageRequest<'a> {
        MessageRequest {
            authorization: auth,
            method: "MESSAGE",
            request_uri: URI,
            body,
        }
    }

    #[test]
    fn nonce_is_fresh_then_stale_after_ttl() {
        let k = key();
        let n = issue_nonce(&k, WallTime(1000), &mut SeqRng(0));
        assert_eq!(n.len(), 80);
        assert_eq!(
            check_nonce(&k, &n, WallTime(1000), 300),
            NonceStatus::Fresh {
                issued: WallTime(1000)
            }
        );
        assert!(matches!(
            check_nonce(&k, &n, WallTime(1300), 300),
            NonceStatus::Fresh { .. }
        ));
        assert_eq!(check_nonce(&k, &n, WallTime(1301), 300), NonceStatus::Stale);
        // Issued in the future beyond the skew allowance.
        assert_eq!(
            check_nonce(&k, &n, WallTime(994), 300),
            NonceStatus::Invalid
        );
    }

    #[test]
    fn forged_or_foreign_nonces_are_invalid() {
        let k = key();
        let n = issue_nonce(&k, WallTime(1000), &mut SeqRng(0));
        assert_eq!(
            check_nonce(&NonceKey::new([8; 32]), &n, WallTime(1000), 300),
            NonceStatus::Invalid
        );
        // Move the timestamp forward without the key.
        let mut forged = n.clone().into_bytes();
        forged[15] = if forged[15] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            check_nonce(&k, &forged, WallTime(1000), 300),
            NonceStatus::Invalid
        );
        for junk in ["", "zz", &n[..78], &n.to_uppercase(), &format!("{n}00")] {
            assert_eq!(
                check_nonce(&k, junk, WallTime(1000), 300),
                NonceStatus::Invalid
            );
        }
        assert_ne!(n, issue_nonce(&k, WallTime(1000), &mut SeqRng(1)));
    }

    #[test]
    fn challenge_offers_sha256_first_then_md5() {
        let [a, b] = challenge_values("dialback", "abc", true);
        let ca = parse_challenge(&a).unwrap();
        let cb = parse_challenge(&b).unwrap();
        assert_eq!(ca.algorithm, Algorithm::Sha256);
        assert_eq!(cb.algorithm, Algorithm::Md5);
        assert!(ca.stale && cb.stale);
        assert_eq!(ca.realm, "dialback");
        assert_eq!(
            digest::select_challenge(&[&a, &b]).unwrap().algorithm,
            Algorithm::Sha256
        );
        assert!(!challenge_values("r", "n", false)[0].contains("stale"));
    }

    #[test]
    fn policy_offers_only_algorithms_it_can_verify() {
        let p = policy();
        assert_eq!(
            offered_algorithms(&p),
            vec![Algorithm::Sha256, Algorithm::Md5]
        );
        assert_eq!(
            challenges(&p, "n", false).to_vec(),
            challenge_values("dialback", "n", false).to_vec()
        );
        let mut i = crate::gate::policy::tests::input();
        for a in &mut i.admins {
            a.ha1_sha256 = None;
        }
        let md5_only = Policy::parse(i.clone()).unwrap();
        assert_eq!(offered_algorithms(&md5_only), vec![Algorithm::Md5]);
        for a in &mut i.admins {
            a.ha1_md5 = None;
        }
        let pins_only = Policy::parse(i).unwrap();
        assert!(challenges(&pins_only, "n", false).is_empty());
        let mut i = crate::gate::policy::tests::input();
        i.digest_algorithms = vec!["MD5".into(), "SHA-256-sess".into()];
        let md5_first = Policy::parse(i).unwrap();
        assert_eq!(
            offered_algorithms(&md5_first),
            vec![Algorithm::Md5, Algorithm::Sha256Sess]
        );
    }

    #[test]
    fn message_round_trip_authenticates_with_either_algorithm() {
        let p = policy();
        let k = key();
        let mut table = ReplayTable::new(16);
        let now = WallTime(5000);
        assert_eq!(
            authenticate_message(&p, &k, &mut table, &req(None, b"MAINTAIN-1"), now),
            MessageAuth::Challenge { stale: false }
        );
        let nonce = issue_nonce(&k, now, &mut SeqRng(3));
        for ch in challenge_values(p.realm(), &nonce, false) {
            let h = signed_message(&ch, "1001", "pw", 1, b"MAINTAIN-1");
            let mut fresh = ReplayTable::new(16);
            assert_eq!(
                authenticate_message(&p, &k, &mut fresh, &req(Some(&h), b"MAINTAIN-1"), now),
                MessageAuth::Authenticated(AdminId::parse("1001").unwrap())
            );
        }
    }

    #[test]
    fn replayed_nonce_count_is_rejected_and_a_higher_one_accepted() {
        let p = policy();
        let k = key();
        let mut table = ReplayTable::new(16);
        let now = WallTime(5000);
        let nonce = issue_nonce(&k, now, &mut SeqRng(3));
        let [ch, _] = challenge_values(p.realm(), &nonce, false);
        let h1 = signed_message(&ch, "1001", "pw", 1, b"x");
        let ok = authenticate_message(&p, &k, &mut table, &req(Some(&h1), b"x"), now);
        assert!(matches!(ok, MessageAuth::Authenticated(_)));
        let again = authenticate_message(&p, &k, &mut table, &req(Some(&h1), b"x"), now);
        assert!(matches!(
            again,
            MessageAuth::Rejected {
                failure: AuthFailure::Replayed,
                ..
            }
        ));
        let h2 = signed_message(&ch, "1001", "pw", 2, b"x");
        assert!(matches!(
            authenticate_message(&p, &k, &mut table, &req(Some(&h2), b"x"), now.plus(1)),
            MessageAuth::Authenticated(_)
        ));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn expired_nonce_gets_a_stale_challenge() {
        let p = policy();
        let k = key();
        let mut table = ReplayTable::new(16);
        let nonce = issue_nonce(&k, WallTime(5000), &mut SeqRng(3));
        let [ch, _] = challenge_values(p.realm(), &nonce, false);
        let h = signed_message(&ch, "1001", "pw", 1, b"x");
        let late = WallTime(5000 + p.security().nonce_ttl_s() + 1);
        assert_eq!(
            authenticate_message(&p, &k, &mut table, &req(Some(&h), b"x"), late),
            MessageAuth::Challenge { stale: true }
        );
        assert!(table.is_empty());
        // A wrong password with the expired nonce is a counted failure, not a stale hint.
        let wrong = signed_message(&ch, "1001", "guess", 1, b"x");
        assert_eq!(
            authenticate_message(&p, &k, &mut table, &req(Some(&wrong), b"x"), late),
            MessageAuth::Rejected {
                claimed: AdminId::parse("1001").ok(),
                failure: AuthFailure::BadResponse
            }
        );
    }

    #[test]
    fn bad_credentials_are_rejected_with_the_claimed_admin() {
        let p = policy();
        let k = key();
        let now = WallTime(5000);
        let nonce = issue_nonce(&k, now, &mut SeqRng(3));
        let [ch, _] = challenge_values(p.realm(), &nonce, false);
        let id = |s| AdminId::parse(s).ok();
        let cases = [
            (
                signed_message(&ch, "1001", "wrong", 1, b"x"),
                id("1001"),
                AuthFailure::BadResponse,
            ),
            (
                signed_message(&ch, "7777", "pw", 1, b"x"),
                None,
                AuthFailure::UnknownUser,
            ),
            (
                signed_message(&ch.replace("dialback", "other"), "1001", "pw", 1, b"x"),
                id("1001"),
                AuthFailure::WrongRealm,
            ),
            (
                signed_message(
                    &ch.replace(", qop=\"auth,auth-int\"", ""),
                    "1001",
                    "pw",
                    1,
                    b"x",
                ),
                id("1001"),
                AuthFailure::NoQop,
            ),
            ("Digest nonsense".to_owned(), None, AuthFailure::Malformed),
        ];
        for (header, claimed, failure) in cases {
            let mut table = ReplayTable::new(16);
            assert_eq!(
                authenticate_message(&p, &k, &mut table, &req(Some(&header), b"x"), now),
                MessageAuth::Rejected { claimed, failure },
                "{header}"
            );
            assert!(table.is_empty(), "failed attempts must not fill the table");
        }
        // Answering with an algorithm the policy does not offer is refused (no downgrade).
        let mut i = crate::gate::policy::tests::input();
        i.digest_algorithms = vec!["SHA-256".into()];
        let sha_only = Policy::parse(i).unwrap();
        let md5_answer = signed_message(
            &challenge_value(p.realm(), &nonce, Algorithm::Md5, false),
            "1001",
            "pw",
            1,
            b"x",
        );
        assert_eq!(
            authenticate_message(
                &sha_only,
                &k,
                &mut ReplayTable::new(4),
                &req(Some(&md5_answer), b"x"),
                now
            ),
            MessageAuth::Rejected {
                claimed: id("1001"),
                failure: AuthFailure::AlgorithmNotOffered
            }
        );
        let h = signed_message(&ch, "1001", "pw", 1, b"x");
        let mut table = ReplayTable::new(16);
        let wrong_uri = MessageRequest {
            request_uri: "sip:other@gate.example",
            ..req(Some(&h), b"x")
        };
        assert!(matches!(
            authenticate_message(&p, &k, &mut table, &wrong_uri, now),
            MessageAuth::Rejected {
                failure: AuthFailure::WrongUri,
                ..
            }
        ));
    }

    #[test]
    fn replay_table_is_bounded_and_prunes_expired_nonces() {
        let mut t = ReplayTable::new(2);
        assert_eq!(
            t.check_and_record("a", WallTime(0), 1, WallTime(0), 10),
            Ok(())
        );
        assert_eq!(
            t.check_and_record("b", WallTime(5), 1, WallTime(5), 10),
            Ok(())
        );
        assert_eq!(
            t.check_and_record("c", WallTime(6), 1, WallTime(6), 10),
            Err(ReplayRefusal::TableFull)
        );
        // "a" expires at 10; at 11 it is pruned and "c" fits.
        assert_eq!(
            t.check_and_record("c", WallTime(11), 1, WallTime(11), 10),
            Ok(())
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.check_and_record("b", WallTime(5), 1, WallTime(12), 10),
            Err(ReplayRefusal::Replayed)
        );
    }

    proptest::proptest! {
        /// A nonce we did not issue is never fresh, whatever its shape (the MAC is 128 bits).
        #[test]
        fn arbitrary_nonces_are_never_fresh(n in "[0-9a-f]{80}|.{0,100}") {
            let status = check_nonce(&key(), &n, WallTime(1000), 300);
            proptest::prop_assert_eq!(status, NonceStatus::Invalid);
        }
    }
}
