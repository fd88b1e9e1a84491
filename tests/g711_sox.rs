//! Cross-check our G.711 against SoX (a real peer, Debian package `sox`): decoders must agree
//! on all 256 codes; encoders may differ only where SoX's own 16-to-14/13-bit rounding puts
//! an input on a decision value into the adjacent interval of the same sign.
//! Skips (passes with a note) when `sox` is not installed.

use std::path::Path;
use std::process::Command;

use dialback::media::g711::Law;

fn sox(args: &[&str]) -> bool {
    Command::new("sox")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn have_sox() -> bool {
    Command::new("sox").arg("--version").output().is_ok()
}

fn write_inputs(dir: &Path) {
    let all: Vec<u8> = (i16::MIN..=i16::MAX)
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(dir.join("all.raw"), all).unwrap();
    std::fs::write(dir.join("codes.raw"), (0..=255u8).collect::<Vec<_>>()).unwrap();
}

fn check(law: Law, encoding: &str) {
    if !have_sox() {
        eprintln!("sox not installed; skipping G.711 cross-check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path());
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let raw16 = [
        "-t", "raw", "-e", "signed", "-b", "16", "-r", "8000", "-c", "1",
    ];
    let raw8 = [
        "-t", "raw", "-e", encoding, "-b", "8", "-r", "8000", "-c", "1",
    ];
    // -D: no dither, or SoX adds noise before companding.
    let (all, coded) = (p("all.raw"), p("coded.raw"));
    let mut enc: Vec<&str> = vec!["-D"];
    enc.extend(raw16);
    enc.push(&all);
    enc.extend(raw8);
    enc.push(&coded);
    assert!(sox(&enc), "sox encode failed");
    let (codes, decoded) = (p("codes.raw"), p("decoded.raw"));
    let mut dec: Vec<&str> = vec!["-D"];
    dec.extend(raw8);
    dec.push(&codes);
    dec.extend(raw16);
    dec.push(&decoded);
    assert!(sox(&dec), "sox decode failed");

    let decoded = std::fs::read(&decoded).unwrap();
    for code in 0..=255u8 {
        let i = usize::from(code) * 2;
        let theirs = i16::from_le_bytes([decoded[i], decoded[i + 1]]);
        assert_eq!(law.decode(code), theirs, "{encoding} decode of {code:#04x}");
    }

    let coded = std::fs::read(&coded).unwrap();
    let (mut differ_pos, mut differ_neg) = (0usize, 0usize);
    for (x, &theirs) in (i16::MIN..=i16::MAX).zip(&coded) {
        let ours = law.encode(x);
        if ours == theirs || law.decode(ours) == law.decode(theirs) {
            continue;
        }
        if x < 0 {
            differ_neg += 1;
        } else {
            differ_pos += 1;
        }
        // SoX reduces 16-bit input to 14/13 bits with its own rounding; that may only move
        // an input sitting on a decision value into the adjacent interval of the same sign,
        // or (A-law has no zero) flip the sign of an input within half a step of zero.
        let (a, b) = (magnitude_index(law, ours), magnitude_index(law, theirs));
        let adjacent = (a - b).abs() == 1 && a.signum() == b.signum();
        let around_zero = a.abs() == 1 && b.abs() == 1 && x.unsigned_abs() <= 4;
        assert!(
            adjacent || around_zero,
            "{encoding}: {x} -> ours {ours:#04x} sox {theirs:#04x}"
        );
    }
    let differ = differ_pos + differ_neg;
    eprintln!("{encoding}: {differ_pos} non-negative and {differ_neg} negative inputs differ");
    assert!(differ < 65536 / 50, "{encoding}: {differ} inputs differ");
}

/// Signed position of a code on the quantiser: +1..=+128 or -1..=-128 (sign-magnitude).
fn magnitude_index(law: Law, code: u8) -> i32 {
    let v = match law {
        Law::Ulaw => !code ^ 0x80,
        Law::Alaw => code ^ 0x55,
    };
    let m = i32::from(v & 0x7F) + 1;
    if v & 0x80 != 0 {
        m
    } else {
        -m
    }
}

#[test]
fn ulaw_agrees_with_sox() {
    check(Law::Ulaw, "mu-law");
}

#[test]
fn alaw_agrees_with_sox() {
    check(Law::Alaw, "a-law");
}
