//! SDP offer/answer on untrusted bodies: answering an offer and reading an answer to our own
//! offer. Nothing may panic, and every answer must mirror the offer line for line
//! (RFC 3264 §6).
#![no_main]

use dialback::sdp::{accept_answer, answer, Codec, LocalMedia};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let local = LocalMedia {
        addr: "192.0.2.1".parse().expect("static address"),
        rtp_port: 40000,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        telephone_event: true,
        ptime_ms: 20,
        session_id: 1,
        session_version: 1,
    };
    if let Ok(a) = answer(data, &local) {
        let offered = count_m_lines(data);
        let answered = count_m_lines(&a.sdp);
        assert_eq!(offered, answered, "answer must mirror the offer's m-lines");
    }
    let _ = accept_answer(&local, data);
});

fn count_m_lines(body: &[u8]) -> usize {
    body.split(|b| *b == b'\n')
        .filter(|l| {
            let start = l.iter().position(|b| *b != b'\r').unwrap_or(l.len());
            let l = &l[start..];
            l.starts_with(b"m=")
        })
        .count()
}
