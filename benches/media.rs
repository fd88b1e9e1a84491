//! Media core throughput: ns per 20 ms frame (160 samples) for G.711 both laws, and ns per
//! RFC 4733 packet for the payload parser and the receiver, and ns per packet+frame through
//! RTP parse and the jitter buffer.
//!
//! Run: `cargo bench --bench media`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dialback::media::g711::Law;
use dialback::media::jitter::{JitterBuffer, JitterConfig};
use dialback::media::rfc4733::{Receiver, TelephoneEvent};
use dialback::media::rtp::{parse, Datagram, RtpHeader, Ssrc};

fn g711(c: &mut Criterion) {
    let samples: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.39).sin() * 20_000.0) as i16)
        .collect();
    let mut group = c.benchmark_group("g711_frame");
    group.throughput(Throughput::Elements(160));
    for (name, law) in [("ulaw", Law::Ulaw), ("alaw", Law::Alaw)] {
        let mut coded = [0u8; 160];
        law.encode_slice(&samples, &mut coded);
        group.bench_function(format!("{name}_encode_160"), |b| {
            let mut out = [0u8; 160];
            b.iter(|| law.encode_slice(black_box(&samples), black_box(&mut out)))
        });
        group.bench_function(format!("{name}_decode_160"), |b| {
            let mut out = [0i16; 160];
            b.iter(|| law.decode_slice(black_box(&coded), black_box(&mut out)))
        });
    }
    group.finish();
}

fn rfc4733(c: &mut Criterion) {
    let payload = TelephoneEvent {
        event: 5,
        end: false,
        volume: 10,
        duration: 400,
    }
    .to_bytes();
    c.bench_function("rfc4733_parse", |b| {
        b.iter(|| TelephoneEvent::parse(black_box(&payload)))
    });
    // Receiver: one update packet of an ongoing press (the common case).
    c.bench_function("rfc4733_receiver_update", |b| {
        let t0 = Instant::now();
        let mut rx = Receiver::default();
        let mut duration: u16 = 0;
        b.iter(|| {
            duration = duration.wrapping_add(160) % 60_000;
            let p = TelephoneEvent {
                event: 5,
                end: false,
                volume: 10,
                duration,
            }
            .to_bytes();
            let _ = rx.handle_packet(t0 + Duration::from_millis(1), false, 1000, black_box(&p));
        })
    });
}

fn jitter(c: &mut Criterion) {
    // One PCMU packet in and one frame out per iteration, in steady state.
    c.bench_function("jitter_push_poll_frame", |b| {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(t0, JitterConfig::default());
        let mut bytes = Vec::with_capacity(200);
        let mut k: u32 = 0;
        b.iter(|| {
            bytes.clear();
            RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: k as u16,
                timestamp: k.wrapping_mul(160),
                ssrc: Ssrc(1),
            }
            .write(&[0x55; 160], &mut bytes)
            .unwrap_or_default();
            let now = t0 + Duration::from_millis(20 * u64::from(k));
            if let Ok(Datagram::Rtp(p)) = parse(&bytes) {
                jb.push(now, &p);
            }
            black_box(jb.poll_frame(now));
            k = k.wrapping_add(1);
        })
    });
}

criterion_group!(benches, g711, rfc4733, jitter);
criterion_main!(benches);
