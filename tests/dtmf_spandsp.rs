//! Our DTMF tone generator against the reference detector of spandsp (Debian package
//! `libspandsp-dev`, plus a C compiler and pkg-config): what we generate within ITU-T Q.24
//! limits is detected as exactly the digits we meant, and what is clearly outside them
//! (too quiet, excessive twist) is not. Skips with a note when the toolchain is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dialback::media::dtmf::Digit;
use dialback::media::tones::{dtmf_sequence, DtmfToneSpec};

fn build_detector(dir: &Path) -> Option<PathBuf> {
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "spandsp"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let flags = String::from_utf8(flags.stdout).ok()?;
    let exe = dir.join("dtmf_rx");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spandsp/dtmf_rx.c");
    let status = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace())
        .status()
        .ok()?;
    status.success().then_some(exe)
}

fn detect(exe: &Path, digits: &str, spec: DtmfToneSpec) -> String {
    let keys: Vec<Digit> = digits.chars().filter_map(Digit::from_char).collect();
    let mut seq = dtmf_sequence(&keys, spec);
    let mut samples = vec![0i16; seq.len_samples() as usize + 800];
    seq.fill(&mut samples);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn spandsp_detects_our_dtmf_exactly_within_q24_limits_and_rejects_outside() {
    let dir = tempfile::tempdir().unwrap();
    let Some(exe) = build_detector(dir.path()) else {
        eprintln!("spandsp/cc/pkg-config not available; skipping");
        return;
    };
    let all = "123A456B789C*0#D";
    assert_eq!(detect(&exe, all, DtmfToneSpec::default()), all);

    // The default start signal, fast dialling: 50 ms tone, 50 ms pause.
    let fast = DtmfToneSpec {
        on_ms: 50,
        off_ms: 50,
        ..DtmfToneSpec::default()
    };
    assert_eq!(detect(&exe, "*62468246*1#", fast), "*62468246*1#");

    // Quiet (-22 dBm0 low, -25 dBm0 high: 3 dB reverse twist), +1.5 % offset: still valid.
    let marginal = DtmfToneSpec {
        low_level_dbm0: -22.0,
        twist_db: -3.0,
        freq_offset_pct: 1.5,
        ..DtmfToneSpec::default()
    };
    assert_eq!(detect(&exe, "159#", marginal), "159#");

    // Far too quiet, or a 15 dB twist: not DTMF.
    let silent = DtmfToneSpec {
        low_level_dbm0: -50.0,
        ..DtmfToneSpec::default()
    };
    assert_eq!(detect(&exe, "159#", silent), "");
    let twisted = DtmfToneSpec {
        twist_db: 15.0,
        ..DtmfToneSpec::default()
    };
    assert_eq!(detect(&exe, "159#", twisted), "");
}
