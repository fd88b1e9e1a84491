//! Real-time factor of the full-duplex FSK modem and the answer-tone detector: one 20 ms
//! frame (160 samples) of transmit plus one of receive per iteration.
//! Run: `cargo bench --bench fsk`; RTF = 20 ms / time per iteration (printed below).

use criterion::{black_box, criterion_group, criterion_main, Criterion};

use dialback::modem::answer_tone::{AnswerTone, AnswerToneDetector, AnswerToneGenerator};
use dialback::modem::fsk::{FskConfig, FskMode, FskModem};

fn duplex(c: &mut Criterion, name: &str, a: FskMode, b: FskMode) {
    let mut ours = FskModem::new(a, FskConfig::default()).expect("valid config");
    let mut peer = FskModem::new(b, FskConfig::default()).expect("valid config");
    // Precompute a second of peer signal carrying data so the receiver is busy framing.
    let mut line = vec![0i16; 8000];
    peer.write(&[0x5a; 64]);
    peer.fill(&mut line);
    let payload = [0xa5u8; 16];
    let mut tx = [0i16; 160];
    let mut k = 0;
    c.bench_function(name, |bch| {
        bch.iter(|| {
            ours.write(&payload);
            ours.fill(&mut tx);
            ours.push(black_box(&line[k..k + 160]));
            while let Some(e) = ours.poll_event() {
                black_box(e);
            }
            k = (k + 160) % 8000;
            black_box(&tx);
        })
    });
}

fn benches(c: &mut Criterion) {
    duplex(
        c,
        "v21_duplex_20ms_frame",
        FskMode::V21Caller,
        FskMode::V21Answerer,
    );
    duplex(
        c,
        "bell103_duplex_20ms_frame",
        FskMode::Bell103Originate,
        FskMode::Bell103Answer,
    );

    let mut g = AnswerToneGenerator::new(AnswerTone::AnsAmPr, -12.0).expect("valid level");
    let mut tone = vec![0i16; 8000];
    g.fill(&mut tone);
    let mut det = AnswerToneDetector::new();
    let mut k = 0;
    c.bench_function("answer_tone_detect_20ms_frame", |b| {
        b.iter(|| {
            det.push(black_box(&tone[k..k + 160]));
            while let Some(e) = det.poll_event() {
                black_box(e);
            }
            k = (k + 160) % 8000;
        })
    });
}

criterion_group!(fsk, benches);
criterion_main!(fsk);
