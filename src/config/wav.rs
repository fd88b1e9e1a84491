//! RIFF/WAVE header check for prompt files.
//!
//! Prompts are played as-is on an 8 kHz G.711 call, so they must be 8 kHz mono, either 16-bit
//! linear PCM (`WAVE_FORMAT_PCM`, tag 1) or 8-bit G.711 (`WAVE_FORMAT_ALAW` 6, `WAVE_FORMAT_MULAW`
//! 7), per the Microsoft RIFF/WAVE layout (Multimedia Programming Interface and Data
//! Specifications 1.0, "WAVE Form"; tags from RFC 2361 Appendix A). `WAVE_FORMAT_EXTENSIBLE`
//! (0xFFFE) is accepted when its sub-format GUID carries one of those tags. Only the header is
//! read: this module takes bytes and never touches the file system.

use thiserror::Error;

const FORMAT_PCM: u16 = 1;
const FORMAT_ALAW: u16 = 6;
const FORMAT_MULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
const REQUIRED_RATE_HZ: u32 = 8000;

/// The sample encoding of an accepted prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptEncoding {
    Linear16,
    Alaw,
    Mulaw,
}

/// What an accepted header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptFormat {
    pub encoding: PromptEncoding,
    /// Length of the `data` chunk as declared in the header.
    pub data_bytes: u32,
}

/// Why a file is not an acceptable prompt.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotRiffWave,
    #[error("no 'fmt ' chunk before the end of the file")]
    MissingFmt,
    #[error("'fmt ' chunk is {len} bytes, shorter than the 16 required")]
    ShortFmt { len: u32 },
    #[error("no 'data' chunk")]
    MissingData,
    #[error(
        "format tag {tag} with {bits} bits per sample; need PCM 16-bit or G.711 (tag 6/7) 8-bit"
    )]
    UnsupportedEncoding { tag: u16, bits: u16 },
    #[error("{channels} channels; need mono")]
    NotMono { channels: u16 },
    #[error("{rate_hz} Hz; need 8000 Hz")]
    WrongRate { rate_hz: u32 },
}

/// Checks a prompt file's RIFF header.
pub fn inspect(bytes: &[u8]) -> Result<PromptFormat, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotRiffWave);
    }
    let mut fmt: Option<&[u8]> = None;
    let mut pos = 12usize;
    // Walk the chunk list; every read is bounds-checked so a truncated file ends the walk.
    while let (Some(id), Some(len)) = (
        bytes.get(pos..pos.saturating_add(4)),
        read_u32(bytes, pos.saturating_add(4)),
    ) {
        let body_start = pos.saturating_add(8);
        let body_end = body_start.saturating_add(len as usize);
        match id {
            b"fmt " => {
                if len < 16 {
                    return Err(WavError::ShortFmt { len });
                }
                fmt = Some(
                    bytes
                        .get(body_start..body_end)
                        .ok_or(WavError::MissingFmt)?,
                );
            }
            b"data" => {
                let fmt = fmt.ok_or(WavError::MissingFmt)?;
                let encoding = check_fmt(fmt)?;
                return Ok(PromptFormat {
                    encoding,
                    data_bytes: len,
                });
            }
            _ => {}
        }
        // RIFF chunks are padded to an even length.
        pos = body_end.saturating_add(body_end & 1);
    }
    match fmt {
        None => Err(WavError::MissingFmt),
        Some(_) => Err(WavError::MissingData),
    }
}

fn check_fmt(fmt: &[u8]) -> Result<PromptEncoding, WavError> {
    let mut tag = read_u16(fmt, 0).unwrap_or(0);
    let channels = read_u16(fmt, 2).unwrap_or(0);
    let rate_hz = read_u32(fmt, 4).unwrap_or(0);
    let bits = read_u16(fmt, 14).unwrap_or(0);
    if tag == FORMAT_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) channelMask(4) SubFormat GUID(16),
        // whose first two bytes are the classic format tag.
        tag = read_u16(fmt, 24).unwrap_or(0);
    }
    let encoding = match (tag, bits) {
        (FORMAT_PCM, 16) => PromptEncoding::Linear16,
        (FORMAT_ALAW, 8) => PromptEncoding::Alaw,
        (FORMAT_MULAW, 8) => PromptEncoding::Mulaw,
        _ => return Err(WavError::UnsupportedEncoding { tag, bits }),
    };
    if channels != 1 {
        return Err(WavError::NotMono { channels });
    }
    if rate_hz != REQUIRED_RATE_HZ {
        return Err(WavError::WrongRate { rate_hz });
    }
    Ok(encoding)
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Builds a canonical 44-byte-header WAV; used by tests here and in `config`.
#[cfg(test)]
pub(crate) fn test_wav(
    tag: u16,
    channels: u16,
    rate_hz: u32,
    bits: u16,
    samples: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate_hz.to_le_bytes());
    let block = channels * bits / 8;
    v.extend_from_slice(&(rate_hz * u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    v.extend_from_slice(samples);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_and_g711_mono_8k_are_accepted() {
        let ok = inspect(&test_wav(1, 1, 8000, 16, &[0; 4])).unwrap();
        assert_eq!(ok.encoding, PromptEncoding::Linear16);
        assert_eq!(ok.data_bytes, 4);
        assert_eq!(
            inspect(&test_wav(6, 1, 8000, 8, &[0xd5])).unwrap().encoding,
            PromptEncoding::Alaw
        );
        assert_eq!(
            inspect(&test_wav(7, 1, 8000, 8, &[0xff])).unwrap().encoding,
            PromptEncoding::Mulaw
        );
    }

    #[test]
    fn wrong_rate_channels_or_encoding_are_named() {
        assert_eq!(
            inspect(&test_wav(1, 1, 16000, 16, &[])),
            Err(WavError::WrongRate { rate_hz: 16000 })
        );
        assert_eq!(
            inspect(&test_wav(1, 2, 8000, 16, &[])),
            Err(WavError::NotMono { channels: 2 })
        );
        assert_eq!(
            inspect(&test_wav(1, 1, 8000, 8, &[])),
            Err(WavError::UnsupportedEncoding { tag: 1, bits: 8 })
        );
        assert_eq!(
            inspect(&test_wav(3, 1, 8000, 32, &[])),
            Err(WavError::UnsupportedEncoding { tag: 3, bits: 32 })
        );
    }

    #[test]
    fn non_wav_and_truncated_input_is_an_error_not_a_panic() {
        assert_eq!(inspect(b""), Err(WavError::NotRiffWave));
        assert_eq!(inspect(b"ID3\x04 mp3 data"), Err(WavError::NotRiffWave));
        let full = test_wav(1, 1, 8000, 16, &[0; 8]);
        for cut in 0..full.len() {
            let _ = inspect(&full[..cut]);
        }
        assert_eq!(inspect(&full[..36]), Err(WavError::MissingData));
        assert_eq!(inspect(&full[..20]), Err(WavError::MissingFmt));
    }

    #[test]
    fn unknown_chunks_before_fmt_are_skipped() {
        let plain = test_wav(1, 1, 8000, 16, &[0; 2]);
        let mut v = plain[..12].to_vec();
        v.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00"); // odd length, padded
        v.extend_from_slice(&plain[12..]);
        assert!(inspect(&v).is_ok());
    }
}
