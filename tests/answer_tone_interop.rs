//! Answer-tone interoperability with spandsp 0.0.6 `modem_connect_tones` (V.25 / V.8):
//! our generators are recognised by spandsp's detector and spandsp's generators by ours,
//! through G.711. The C harness tests/c/tone_harness.c is built by the test.

#[path = "fsk_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dialback::modem::answer_tone::{
    AnswerTone, AnswerToneDetector, AnswerToneEvent, AnswerToneGenerator, CallingToneGenerator,
};
use support::Law;

fn build(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/tone_harness.c");
    let exe = dir.join("tone_harness");
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lspandsp", "-lm"])
        .status()
        .expect("cc must be installed");
    assert!(
        st.success(),
        "building the spandsp tone harness (needs libspandsp-dev)"
    );
    exe
}

/// spandsp MODEM_CONNECT_TONES_* codes and the names its detector reports.
fn spandsp_code(t: AnswerTone) -> (u32, &'static str) {
    match t {
        AnswerTone::Ans => (2, "ANS or FAX CED"),
        AnswerTone::AnsPr => (3, "ANS/"),
        AnswerTone::AnsAm => (4, "ANSam"),
        AnswerTone::AnsAmPr => (5, "ANSam/"),
        AnswerTone::Bell => (8, "Bell ANS"),
    }
}

const TONES: [AnswerTone; 5] = [
    AnswerTone::Ans,
    AnswerTone::AnsPr,
    AnswerTone::AnsAm,
    AnswerTone::AnsAmPr,
    AnswerTone::Bell,
];

/// Feed samples to spandsp's detector; returns the tone names it reported.
fn spandsp_detect(exe: &Path, det_type: u32, samples: &[i16]) -> Vec<String> {
    let mut child = Command::new(exe)
        .args(["det", &det_type.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_ne_bytes()).collect();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("tone "))
        .filter_map(|l| l.split(" level ").next())
        .map(str::to_owned)
        .collect()
}

fn spandsp_generate(exe: &Path, gen_type: u32, seconds: u32) -> Vec<i16> {
    let out = Command::new(exe)
        .args(["gen", &gen_type.to_string(), &seconds.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
        .chunks_exact(2)
        .map(|c| i16::from_ne_bytes([c[0], c[1]]))
        .collect()
}

fn our_detect(samples: &[i16]) -> Vec<AnswerToneEvent> {
    let mut d = AnswerToneDetector::new();
    let mut ev = Vec::new();
    for c in samples.chunks(160) {
        d.push(c);
        ev.extend(std::iter::from_fn(|| d.poll_event()));
    }
    ev
}

#[test]
fn spandsp_recognises_each_of_our_answer_tones_through_g711() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    for tone in TONES {
        for law in [Law::Mu, Law::A] {
            let mut g = AnswerToneGenerator::new(tone, -12.0).unwrap();
            let mut s = vec![0i16; 8000 * 3 + 4000];
            g.fill(&mut s[4000..]);
            law.line(&mut s);
            let (code, name) = spandsp_code(tone);
            let det = if tone == AnswerTone::Bell { code } else { 5 };
            let got = spandsp_detect(&exe, det, &s);
            assert_eq!(
                got.first().map(String::as_str),
                Some(name),
                "{tone:?} {law:?}: {got:?}"
            );
        }
    }
}

#[test]
fn we_recognise_each_spandsp_answer_tone_and_its_end_through_g711() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    for tone in TONES {
        let (code, _) = spandsp_code(tone);
        let mut s = vec![0i16; 2400];
        s.extend(spandsp_generate(&exe, code, 5));
        s.extend([0i16; 4000]);
        Law::A.line(&mut s);
        // spandsp leads some tones with silence: expect the start within a 10 ms block.
        let onset = s.iter().position(|x| x.unsigned_abs() > 100).unwrap() as u64;
        let ev = our_detect(&s);
        assert!(
            matches!(ev.first(), Some(AnswerToneEvent::Detected { tone: t, at }) if *t == tone && at.abs_diff(onset) <= 80),
            "{tone:?}: {ev:?}"
        );
        assert!(
            matches!(ev.get(1), Some(AnswerToneEvent::Ended { tone: t, .. }) if *t == tone),
            "{tone:?}: {ev:?}"
        );
        assert_eq!(ev.len(), 2, "{tone:?}: {ev:?}");
    }
}

#[test]
fn calling_tone_is_recognised_by_spandsp_and_is_not_an_answer_tone_to_either() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build(dir.path());
    let mut ct = CallingToneGenerator::new(-12.0).unwrap();
    let mut s = vec![0i16; 8000 * 6];
    ct.fill(&mut s);
    Law::Mu.line(&mut s);
    let got = spandsp_detect(&exe, 9, &s);
    assert!(!got.is_empty(), "spandsp did not hear our calling tone");
    assert!(our_detect(&s).is_empty());
    assert!(spandsp_detect(&exe, 5, &s).is_empty());
    let theirs = spandsp_generate(&exe, 9, 6);
    assert!(our_detect(&theirs).is_empty());
}
