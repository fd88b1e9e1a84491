//! Cost of `media::inband` per 20 ms RTP frame (160 samples at 8 kHz).
//!
//! `cargo bench --bench inband`. Inputs are generated here: DTMF digits with pauses plus
//! low noise (the detector's busiest path: pair fit and harmonic check run on tone blocks),
//! and noise alone (the common case on a call).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use dialback::media::inband::{InbandConfig, InbandDetector, COL_HZ, DBM0_PEAK, ROW_HZ};

fn signal(with_tones: bool) -> Vec<i16> {
    let mut out = Vec::with_capacity(8000 * 10);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let amp = f64::from(DBM0_PEAK) * 10f64.powf(-10.0 / 20.0);
    for n in 0..8000 * 10usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = (x % 400) as f64 - 200.0;
        let slot = n / 800; // 100 ms slots: 50 ms tone, 50 ms pause
        let v = if with_tones && n % 800 < 400 {
            let (r, c) = (ROW_HZ[slot % 4], COL_HZ[(slot / 4) % 4]);
            let t = n as f64 / 8000.0;
            let tau = 2.0 * std::f64::consts::PI;
            amp * ((tau * f64::from(r) * t).sin() + (tau * f64::from(c) * t).sin())
        } else {
            0.0
        };
        out.push((v + noise).round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

fn bench(c: &mut Criterion) {
    for (name, tones) in [("dtmf_and_noise", true), ("noise_only", false)] {
        let pcm = signal(tones);
        let mut group = c.benchmark_group(format!("inband/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("per_20ms_frame", |b| {
            let mut det = InbandDetector::new(InbandConfig::default()).expect("config");
            let mut frames = pcm.chunks_exact(160).cycle();
            b.iter(|| {
                if let Some(frame) = frames.next() {
                    det.push(black_box(frame));
                }
                while let Some(e) = det.poll_event() {
                    black_box(e);
                }
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
