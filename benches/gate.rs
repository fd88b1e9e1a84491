//! Costs of the gate's hot paths, for sizing the runtime (argon2 runs off the reactor; the
//! rest runs inline per request). Run: `cargo bench --bench gate`.
//!
//! Plain `std::time::Instant` timing (no harness dependency). The PIN figures are the minimum
//! of 15 interleaved runs for a known and an unknown ID (they must match: the dummy hash has
//! the same parameters); the others are the median of 9 batches.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use dialback::gate::decide::{decide, Credentials, GateState, SignalSeen, StartRequest};
use dialback::gate::nonce::{
    authenticate_message, challenge_values, issue_nonce, MessageRequest, NonceKey, ReplayTable,
};
use dialback::gate::pin::{digest_ha1s, hash_pin, verify_pin};
use dialback::gate::policy::{AdminInput, Policy, PolicyInput};
use dialback::gate::{Secret, WallTime};
use dialback::sip::digest::{authorization, parse_challenge, ClientCredentials, ResponseParams};

struct Rng(u64);
impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
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
impl rand_core::CryptoRng for Rng {}

fn median_per_op(batches: usize, per_batch: u32, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed() / per_batch
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut rng = Rng(1);
    let pin_hash = hash_pin(&Secret::new("4321"), &mut rng).expect("hash");
    let (md5, sha256) = digest_ha1s("1001", "bench", &Secret::new("pw"));
    let policy = Policy::parse(PolicyInput {
        realm: "bench".into(),
        admins: vec![AdminInput {
            digit: 1,
            id: "1001".into(),
            name: "bench".into(),
            numbers: vec!["sip:desk@pbx".into()],
            pin_hash: Some(pin_hash),
            ha1_realm: None,
            ha1_md5: Some(md5),
            ha1_sha256: Some(sha256),
        }],
        signal: Default::default(),
        callback: Default::default(),
        security: Default::default(),
        digest_algorithms: Vec::new(),
    })
    .expect("policy");

    // Interleave known and unknown IDs so machine load affects both alike.
    let (mut known_t, mut unknown_t) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        known_t.push(median_per_op(1, 2, || {
            black_box(verify_pin(&policy, "1001", &Secret::new("4321")));
        }));
        unknown_t.push(median_per_op(1, 2, || {
            black_box(verify_pin(&policy, "9999", &Secret::new("4321")));
        }));
    }
    known_t.sort();
    unknown_t.sort();
    // Minimum: the least disturbed run on a shared machine.
    let (known, unknown) = (known_t[0], unknown_t[0]);
    println!("verify_pin argon2id m=19456,t=2,p=1 known ID:   {known:?}");
    println!("verify_pin argon2id m=19456,t=2,p=1 unknown ID: {unknown:?}");

    let key = NonceKey::new([9; 32]);
    let now = WallTime(1_764_000_000);
    let nonce = issue_nonce(&key, now, &mut rng);
    let [sha_ch, _] = challenge_values("bench", &nonce, false);
    let ch = parse_challenge(&sha_ch).expect("challenge");
    let mut nc = 0u32;
    let mut replay = ReplayTable::new(1 << 16);
    let per_msg = median_per_op(9, 2000, || {
        nc += 1;
        let h = authorization(
            &ch,
            &ClientCredentials {
                username: "1001",
                password: "pw",
            },
            &ResponseParams {
                method: "MESSAGE",
                uri: "sip:gate@bench",
                body: b"MAINTAIN-1",
                nc,
                cnonce: "c",
            },
        );
        black_box(authenticate_message(
            &policy,
            &key,
            &mut replay,
            &MessageRequest {
                authorization: Some(&h),
                method: "MESSAGE",
                request_uri: "sip:gate@bench",
                body: b"MAINTAIN-1",
            },
            now,
        ));
    });
    println!("SHA-256 digest: client authorization + server authenticate_message: {per_msg:?}");

    let mut state = GateState::new();
    let req = StartRequest {
        source: IpAddr::V4(Ipv4Addr::LOCALHOST),
        credentials: Credentials::Invalid { claimed: None },
        signal: SignalSeen::Unmatched,
        authenticated_at: now,
        audit_available: true,
    };
    let mut t = now;
    let per_decide = median_per_op(9, 20_000, || {
        t = t.plus(1000);
        black_box(decide(&policy, &req, t, &mut state));
    });
    println!("decide (deny, records a failure): {per_decide:?}");
}
