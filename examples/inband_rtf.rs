//! Times `media::inband` over a raw s16le 8 kHz file, for scripts/bench-inband-vs-spandsp.sh.
//!
//! usage: inband_rtf FILE [REPEATS]; prints "digits N", "samples N", "elapsed_ns N" like
//! tests/c/dtmf_rx_harness.c (input fed in 160-sample frames, clock around push/poll only).

use std::time::Instant;

use dialback::media::inband::{InbandConfig, InbandDetector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: inband_rtf FILE [REPEATS]")?;
    let repeats: u32 = args
        .next()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let bytes = std::fs::read(&path)?;
    let pcm: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut elapsed = 0u128;
    let mut first_digits = 0;
    for r in 0..repeats {
        let mut det = InbandDetector::new(InbandConfig::default())?;
        let mut digits = 0u64;
        let t0 = Instant::now();
        for frame in pcm.chunks(160) {
            det.push(frame);
            while det.poll_event().is_some() {
                digits += 1;
            }
        }
        det.finish();
        digits += std::iter::from_fn(|| det.poll_event()).count() as u64;
        elapsed += t0.elapsed().as_nanos();
        if r == 0 {
            first_digits = digits;
        }
    }
    println!(
        "digits {first_digits}\nsamples {}\nelapsed_ns {elapsed}",
        pcm.len()
    );
    Ok(())
}
