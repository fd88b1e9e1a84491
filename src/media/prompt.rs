//! Voice prompts from WAV files, as 16-bit linear samples at 8 kHz.
//!
//! Accepts RIFF/WAVE (Microsoft RIFF spec, 1991; `fmt ` = WAVEFORMATEX) with one channel at
//! 8000 Hz in one of three encodings: `WAVE_FORMAT_PCM` (tag 1) with 16-bit samples,
//! `WAVE_FORMAT_ALAW` (tag 6) or `WAVE_FORMAT_MULAW` (tag 7) with 8-bit ITU-T G.711 codes
//! (also when wrapped in `WAVE_FORMAT_EXTENSIBLE`, tag 0xFFFE). Anything else is refused with
//! a typed error naming the file, so a bad prompt fails at load, not mid-call. We never
//! resample or mix down: prompts are made for the phone network, and a wrong file is an
//! operator error to report.
//!
//! [`decode`] is pure (bytes in, samples out) and never panics; [`load`] is the one function
//! that touches the file system. PCM data is read by `hound`; `hound` refuses the G.711 format
//! tags, so for those our own chunk walker finds the `data` chunk and we expand the codes per
//! ITU-T G.711 Tables 1a/2a. The chunk walker also runs first for PCM so every refusal has
//! the same typed error whichever decoder would have met it.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};

/// The only sample rate we accept, in Hz (narrowband telephony, ITU-T G.711 §1).
pub const PROMPT_SAMPLE_RATE: u32 = 8000;

/// Largest prompt file we read: 16 MiB, about 17 minutes of 16-bit PCM at 8 kHz.
pub const MAX_PROMPT_BYTES: usize = 16 * 1024 * 1024;

/// `WAVE_FORMAT_PCM` (RFC 2361 Appendix A).
const FORMAT_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_ALAW` (RFC 2361 Appendix A).
const FORMAT_ALAW: u16 = 0x0006;
/// `WAVE_FORMAT_MULAW` (RFC 2361 Appendix A).
const FORMAT_MULAW: u16 = 0x0007;
/// `WAVE_FORMAT_EXTENSIBLE`: the real tag is the first two bytes of the sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Size of the WAVEFORMAT fields we read from `fmt ` (tag .. bits per sample).
const FMT_MIN_LEN: usize = 16;
/// Offset of the sub-format GUID in a WAVEFORMATEXTENSIBLE `fmt ` chunk.
const FMT_EXTENSIBLE_SUBFORMAT_AT: usize = 24;

/// A prompt's sample encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptEncoding {
    /// 16-bit signed little-endian linear PCM.
    Pcm16,
    /// ITU-T G.711 A-law, 8 bits per sample.
    Alaw,
    /// ITU-T G.711 μ-law, 8 bits per sample.
    Mulaw,
}

impl PromptEncoding {
    /// Bits per sample the encoding requires.
    pub const fn bits_per_sample(self) -> u16 {
        match self {
            PromptEncoding::Pcm16 => 16,
            PromptEncoding::Alaw | PromptEncoding::Mulaw => 8,
        }
    }
}

/// Why a prompt could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("prompt {}: file not found", file.display())]
    Missing { file: PathBuf },
    #[error("prompt {}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("prompt {}: larger than the {max}-byte limit", file.display())]
    TooLarge { file: PathBuf, max: usize },
    #[error("prompt {}: not a RIFF/WAVE file", file.display())]
    NotWave { file: PathBuf },
    #[error("prompt {}: malformed WAVE file: {reason}", file.display())]
    Malformed { file: PathBuf, reason: String },
    #[error(
        "prompt {}: WAVE format tag {tag:#06x} is not supported (need 1 PCM, 6 A-law or 7 μ-law)",
        file.display()
    )]
    UnsupportedFormat { file: PathBuf, tag: u16 },
    #[error("prompt {}: {channels} channels, need mono", file.display())]
    NotMono { file: PathBuf, channels: u16 },
    #[error("prompt {}: sample rate {rate} Hz, need {PROMPT_SAMPLE_RATE} Hz", file.display())]
    WrongRate { file: PathBuf, rate: u32 },
    #[error(
        "prompt {}: {bits} bits per sample, {encoding:?} needs {}",
        file.display(),
        encoding.bits_per_sample()
    )]
    WrongBitDepth {
        file: PathBuf,
        encoding: PromptEncoding,
        bits: u16,
    },
    #[error("prompt {}: no samples", file.display())]
    Empty { file: PathBuf },
}

/// Reads and decodes a prompt file. The only function here that does IO.
pub fn load(path: &Path) -> Result<Vec<i16>, PromptError> {
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    let mut bytes = Vec::new();
    // Read one byte past the cap so an oversized file is detected without reading all of it.
    file.take(MAX_PROMPT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, e))?;
    decode(path, &bytes)
}

/// Decodes WAV bytes to samples at [`PROMPT_SAMPLE_RATE`]. `file` only names the source in
/// errors.
pub fn decode(file: &Path, bytes: &[u8]) -> Result<Vec<i16>, PromptError> {
    let named = || file.to_path_buf();
    if bytes.len() > MAX_PROMPT_BYTES {
        return Err(PromptError::TooLarge {
            file: named(),
            max: MAX_PROMPT_BYTES,
        });
    }
    let wave = walk_chunks(bytes).map_err(|e| match e {
        WalkError::NotWave => PromptError::NotWave { file: named() },
        WalkError::Malformed(reason) => PromptError::Malformed {
            file: named(),
            reason: reason.to_owned(),
        },
    })?;
    let encoding = match wave.format_tag {
        FORMAT_PCM => PromptEncoding::Pcm16,
        FORMAT_ALAW => PromptEncoding::Alaw,
        FORMAT_MULAW => PromptEncoding::Mulaw,
        tag => return Err(PromptError::UnsupportedFormat { file: named(), tag }),
    };
    if wave.channels != 1 {
        return Err(PromptError::NotMono {
            file: named(),
            channels: wave.channels,
        });
    }
    if wave.sample_rate != PROMPT_SAMPLE_RATE {
        return Err(PromptError::WrongRate {
            file: named(),
            rate: wave.sample_rate,
        });
    }
    if wave.bits_per_sample != encoding.bits_per_sample() {
        return Err(PromptError::WrongBitDepth {
            file: named(),
            encoding,
            bits: wave.bits_per_sample,
        });
    }
    let samples = match encoding {
        PromptEncoding::Pcm16 => {
            decode_pcm(bytes, wave.data.len() / 2).map_err(|e| PromptError::Malformed {
                file: named(),
                reason: e.to_string(),
            })?
        }
        PromptEncoding::Alaw => wave.data.iter().map(|b| alaw_to_linear(*b)).collect(),
        PromptEncoding::Mulaw => wave.data.iter().map(|b| mulaw_to_linear(*b)).collect(),
    };
    if samples.is_empty() {
        return Err(PromptError::Empty { file: named() });
    }
    Ok(samples)
}

/// ITU-T G.711 μ-law expansion (Table 2a): 8-bit code to 16-bit linear (14-bit magnitude
/// scaled by 4, range ±32124).
pub fn mulaw_to_linear(code: u8) -> i16 {
    // G.711 transmits μ-law codes inverted.
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    // 0x84 is the G.711 bias (33 << 2); the magnitude fits in 15 bits, so i16 holds it.
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let linear = if u & 0x80 != 0 { -magnitude } else { magnitude };
    // Range ±32124 by construction, inside i16.
    linear as i16
}

/// ITU-T G.711 A-law expansion (Table 1a): 8-bit code to 16-bit linear (13-bit magnitude
/// scaled by 8, range ±32256).
pub fn alaw_to_linear(code: u8) -> i16 {
    // G.711 inverts the even bits of A-law codes on the line.
    let a = code ^ 0x55;
    let exponent = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0F);
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // A-law's sign bit set means positive.
    let linear = if a & 0x80 != 0 { magnitude } else { -magnitude };
    // Range ±32256 by construction, inside i16.
    linear as i16
}

/// Fields of a validated RIFF/WAVE container.
struct Wave<'a> {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits_per_sample: u16,
    data: &'a [u8],
}

enum WalkError {
    NotWave,
    Malformed(&'static str),
}

/// Walks the RIFF chunks for `fmt ` and `data`. Chunks are word-aligned (RIFF spec: a pad
/// byte follows an odd-sized chunk). A `data` chunk running past the end of the file (as
/// written by a recorder that never patched the size) is cut to what is present.
fn walk_chunks(bytes: &[u8]) -> Result<Wave<'_>, WalkError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WalkError::NotWave);
    }
    let mut rest = bytes.get(12..).unwrap_or_default();
    let mut fmt: Option<&[u8]> = None;
    let mut data: Option<&[u8]> = None;
    while rest.len() >= 8 && (fmt.is_none() || data.is_none()) {
        let (header, body) = rest.split_at(8);
        let id = &header[..4];
        let len = usize::try_from(le_u32(&header[4..8]))
            .map_err(|_| WalkError::Malformed("chunk size does not fit in memory"))?;
        let present = body.len().min(len);
        let chunk = &body[..present];
        match id {
            b"fmt " if fmt.is_none() => fmt = Some(chunk),
            b"data" if data.is_none() => data = Some(chunk),
            _ => {}
        }
        let advance = len.saturating_add(len % 2);
        rest = body.get(advance..).unwrap_or_default();
    }
    let fmt = fmt.ok_or(WalkError::Malformed("no fmt chunk"))?;
    let data = data.ok_or(WalkError::Malformed("no data chunk"))?;
    if fmt.len() < FMT_MIN_LEN {
        return Err(WalkError::Malformed("fmt chunk shorter than 16 bytes"));
    }
    let mut format_tag = le_u16(&fmt[0..2]);
    if format_tag == FORMAT_EXTENSIBLE {
        format_tag = fmt
            .get(FMT_EXTENSIBLE_SUBFORMAT_AT..FMT_EXTENSIBLE_SUBFORMAT_AT + 2)
            .map(le_u16)
            .ok_or(WalkError::Malformed(
                "WAVE_FORMAT_EXTENSIBLE without sub-format",
            ))?;
    }
    Ok(Wave {
        format_tag,
        channels: le_u16(&fmt[2..4]),
        sample_rate: le_u32(&fmt[4..8]),
        bits_per_sample: le_u16(&fmt[14..16]),
        data,
    })
}

/// Reads 16-bit mono PCM with `hound`, already validated by [`walk_chunks`]. `present` is the
/// number of whole samples the file holds: a data chunk cut short by the end of the file keeps
/// what is whole (the rule the chunk walker applies to G.711) instead of failing at the end.
fn decode_pcm(bytes: &[u8], present: usize) -> Result<Vec<i16>, hound::Error> {
    let reader = hound::WavReader::new(Cursor::new(bytes))?;
    reader.into_samples::<i16>().take(present).collect()
}

fn read_error(path: &Path, e: io::Error) -> PromptError {
    if e.kind() == io::ErrorKind::NotFound {
        PromptError::Missing {
            file: path.to_path_buf(),
        }
    } else {
        PromptError::Read {
            file: path.to_path_buf(),
            source: e,
        }
    }
}

/// Callers pass exactly 2 bytes (fixed sub-slices); a shorter slice reads as zero-padded.
fn le_u16(b: &[u8]) -> u16 {
    let mut a = [0u8; 2];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u16::from_le_bytes(a)
}

/// Callers pass exactly 4 bytes (fixed sub-slices); a shorter slice reads as zero-padded.
fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn file() -> &'static Path {
        Path::new("prompts/welcome.wav")
    }

    /// A WAV written by hound with the given spec and samples.
    fn hound_wav(spec: hound::WavSpec, samples: &[i32]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut out, spec).expect("writer");
            for s in samples {
                w.write_sample(*s).expect("sample");
            }
            w.finalize().expect("finalize");
        }
        out.into_inner()
    }

    fn pcm_spec(channels: u16, sample_rate: u32, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    /// A hand-built WAVE file: `fmt ` with the given fields, then `data`.
    fn raw_wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let block_align = channels * bits.div_ceil(8);
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes()); // cbSize (WAVEFORMATEX)
        riff(&[(b"fmt ", &fmt), (b"data", data)])
    }

    fn riff(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut body = b"WAVE".to_vec();
        for (id, data) in chunks {
            body.extend_from_slice(*id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn pcm16_mono_8k_loads_sample_exact() {
        let samples = [0, 1, -1, i16::MAX.into(), i16::MIN.into(), 1234];
        let wav = hound_wav(pcm_spec(1, 8000, 16), &samples);
        let got = decode(file(), &wav).expect("decodes");
        assert_eq!(got, [0, 1, -1, i16::MAX, i16::MIN, 1234]);
    }

    #[test]
    fn g711_codes_expand_to_the_itu_table_values() {
        // ITU-T G.711 Table 2a (μ-law) and Table 1a (A-law) end points, in 16-bit scale.
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        assert_eq!(mulaw_to_linear(0xFE), 8);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn g711_expansion_is_odd_symmetric_and_monotonic() {
        for code in 0u8..=0x7F {
            // Flipping the sign bit negates the value in both laws.
            assert_eq!(mulaw_to_linear(code), -mulaw_to_linear(code | 0x80));
            assert_eq!(alaw_to_linear(code), -alaw_to_linear(code | 0x80));
        }
        // μ-law: codes 0x80..=0xFF run from the largest positive value down to 0.
        let mu: Vec<i16> = (0x80u8..=0xFF).map(mulaw_to_linear).collect();
        assert!(mu.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn alaw_and_mulaw_files_load_through_our_riff_reader() {
        let mu = decode(
            file(),
            &raw_wav(FORMAT_MULAW, 1, 8000, 8, &[0xFF, 0x80, 0x00]),
        )
        .expect("μ-law");
        assert_eq!(mu, [0, 32124, -32124]);
        let a = decode(
            file(),
            &raw_wav(FORMAT_ALAW, 1, 8000, 8, &[0xD5, 0xAA, 0x2A]),
        )
        .expect("A-law");
        assert_eq!(a, [8, 32256, -32256]);
    }

    #[test]
    fn extensible_format_uses_its_subformat_tag() {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&FORMAT_EXTENSIBLE.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        fmt.extend_from_slice(&8u16.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        fmt.extend_from_slice(&FORMAT_MULAW.to_le_bytes()); // GUID, first two bytes
        fmt.extend_from_slice(&[0; 14]);
        let wav = riff(&[(b"fmt ", &fmt), (b"LIST", b"odd"), (b"data", &[0x80])]);
        assert_eq!(decode(file(), &wav).expect("decodes"), [32124]);
    }

    #[test]
    fn each_refusal_is_a_typed_error_naming_the_file() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not a wave file at all".to_vec(), "NotWave"),
            (b"RIFF\x04\x00\x00\x00AVI ".to_vec(), "NotWave"),
            (hound_wav(pcm_spec(1, 16000, 16), &[1, 2]), "WrongRate"),
            (hound_wav(pcm_spec(1, 44100, 16), &[1, 2]), "WrongRate"),
            (hound_wav(pcm_spec(2, 8000, 16), &[1, 2]), "NotMono"),
            (hound_wav(pcm_spec(1, 8000, 8), &[1, 2]), "WrongBitDepth"),
            (hound_wav(pcm_spec(1, 8000, 24), &[1, 2]), "WrongBitDepth"),
            (raw_wav(FORMAT_MULAW, 1, 8000, 16, &[0, 0]), "WrongBitDepth"),
            (raw_wav(0x0003, 1, 8000, 32, &[0; 4]), "UnsupportedFormat"),
            (raw_wav(0x0011, 1, 8000, 4, &[0; 4]), "UnsupportedFormat"),
            (hound_wav(pcm_spec(1, 8000, 16), &[]), "Empty"),
            (raw_wav(FORMAT_ALAW, 1, 8000, 8, &[]), "Empty"),
            (riff(&[(b"data", &[0, 0])]), "Malformed"),
            (riff(&[(b"fmt ", &[1, 0, 1, 0])]), "Malformed"),
        ];
        for (bytes, want) in cases {
            let err = decode(file(), &bytes).expect_err(want);
            let kind = format!("{err:?}");
            assert!(kind.starts_with(want), "{want}: got {kind}");
            assert!(
                err.to_string().contains("prompts/welcome.wav"),
                "{err} names the file"
            );
        }
    }

    #[test]
    fn a_data_chunk_cut_short_keeps_the_whole_samples() {
        let mut wav = hound_wav(pcm_spec(1, 8000, 16), &[10, 20, 30]);
        wav.truncate(wav.len() - 1); // half of the last sample gone
        assert_eq!(decode(file(), &wav).expect("decodes"), [10, 20]);
        let mut mu = raw_wav(FORMAT_MULAW, 1, 8000, 8, &[0xFF, 0xFF, 0x80, 0x80]);
        mu.truncate(mu.len() - 2);
        assert_eq!(decode(file(), &mu).expect("decodes"), [0, 0]);
    }

    #[test]
    fn load_reports_a_missing_file_by_name() {
        let path = Path::new("/nonexistent/dialback/prompt.wav");
        let err = load(path).expect_err("missing");
        assert!(matches!(err, PromptError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/dialback/prompt.wav"));
    }

    #[test]
    fn load_reads_a_file_from_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.wav");
        std::fs::write(&path, hound_wav(pcm_spec(1, 8000, 16), &[7, -7])).expect("write");
        assert_eq!(load(&path).expect("loads"), [7, -7]);
    }

    /// Cross-check against sox (a Debian package installed here and in CI): the same tone
    /// written as μ-law, A-law and 16-bit PCM must decode to sox's own expansion of the codes.
    /// Skipped when sox is absent.
    #[test]
    fn sox_written_prompts_decode_like_sox_decodes_them() {
        let Ok(status) = Command::new("sox").arg("--version").output() else {
            eprintln!("sox not installed; skipping");
            return;
        };
        assert!(status.status.success());
        let dir = tempfile::tempdir().expect("tempdir");
        let sox = |args: &[&str]| {
            let ok = Command::new("sox")
                .args(args)
                .current_dir(dir.path())
                .status()
                .expect("sox runs")
                .success();
            assert!(ok, "sox {args:?}");
        };
        for law in ["u-law", "a-law"] {
            let coded = format!("{law}.wav");
            let linear = format!("{law}-pcm.wav");
            sox(&[
                "-n", "-r", "8000", "-c", "1", "-e", law, "-b", "8", &coded, "synth", "0.25",
                "sine", "440", "vol", "0.8",
            ]);
            sox(&[&coded, "-e", "signed-integer", "-b", "16", &linear]);
            let ours = load(&dir.path().join(&coded)).expect("ours");
            let theirs = load(&dir.path().join(&linear)).expect("sox's");
            assert_eq!(ours.len(), 2000);
            assert_eq!(ours, theirs, "{law}");
        }
        sox(&[
            "-n",
            "-r",
            "8000",
            "-c",
            "2",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "stereo.wav",
            "synth",
            "0.1",
            "sine",
            "440",
        ]);
        assert!(matches!(
            load(&dir.path().join("stereo.wav")),
            Err(PromptError::NotMono { channels: 2, .. })
        ));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn decode_never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode(file(), &body);
            }

            #[test]
            fn decode_never_panics_on_mutated_headers(
                data in proptest::collection::vec(any::<u8>(), 0..64),
                at in 0usize..80,
                flip in any::<u8>(),
                tag in prop::sample::select(vec![FORMAT_PCM, FORMAT_ALAW, FORMAT_MULAW]),
            ) {
                let mut wav = raw_wav(tag, 1, 8000, if tag == FORMAT_PCM { 16 } else { 8 }, &data);
                let i = at % wav.len();
                wav[i] ^= flip;
                let _ = decode(file(), &wav);
            }
        }
    }
}
