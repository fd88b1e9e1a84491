//! DTMF carried in SIP INFO bodies (RFC 6086 INFO; the bodies are de-facto formats):
//!
//! - `application/dtmf-relay` (Cisco style): lines `Signal=5` and `Duration=160` (ms);
//!   tolerated: CRLF or LF line ends, spaces around `=`, any key case, extra lines, `Signal`
//!   values `0-9 * # A-D` (letters any case) and the numeric forms `10` (= `*`) and `11`
//!   (= `#`) that some gateways send (their RFC 4733 event codes).
//! - `application/dtmf`: the body is a single key, optionally with surrounding whitespace;
//!   `10` and `11` are accepted likewise.
//!
//! Any other content type is [`InfoError::UnsupportedMediaType`], which the SIP layer answers
//! with 415 (RFC 3261 §21.4.13). The parser never allocates and never panics.

use thiserror::Error;

use crate::media::dtmf::Digit;

/// Bodies longer than this are rejected before parsing (a relay body is ~30 bytes).
pub const MAX_BODY_LEN: usize = 1024;

/// A DTMF key from an INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDtmf {
    /// The key.
    pub digit: Digit,
    /// `Duration` in milliseconds, when given and valid.
    pub duration_ms: Option<u32>,
}

/// Why an INFO body is not a DTMF key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InfoError {
    /// Not a DTMF content type: answer 415 Unsupported Media Type.
    #[error("unsupported content type {content_type:?}")]
    UnsupportedMediaType {
        /// The media type as received (parameters stripped), truncated to 64 bytes.
        content_type: String,
    },
    /// Body over [`MAX_BODY_LEN`].
    #[error("body of {len} bytes is too large")]
    BodyTooLarge {
        /// Body length.
        len: usize,
    },
    /// Body is not UTF-8/ASCII text.
    #[error("body is not text")]
    NotText,
    /// `application/dtmf-relay` without a `Signal` line.
    #[error("no Signal line")]
    MissingSignal,
    /// The signal is not a key.
    #[error("signal {value:?} is not a DTMF key")]
    BadSignal {
        /// The value, truncated to 16 bytes.
        value: String,
    },
}

impl InfoError {
    /// The SIP status code to answer with: 415 for an unknown type, 400 for a bad body.
    pub fn status_code(&self) -> u16 {
        match self {
            InfoError::UnsupportedMediaType { .. } => 415,
            _ => 400,
        }
    }
}

/// Parse an INFO body given its Content-Type header value (parameters allowed).
pub fn parse_info_body(content_type: &str, body: &[u8]) -> Result<InfoDtmf, InfoError> {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let is_relay = media_type.eq_ignore_ascii_case("application/dtmf-relay");
    let is_dtmf = media_type.eq_ignore_ascii_case("application/dtmf");
    if !is_relay && !is_dtmf {
        return Err(InfoError::UnsupportedMediaType {
            content_type: truncate(media_type, 64),
        });
    }
    if body.len() > MAX_BODY_LEN {
        return Err(InfoError::BodyTooLarge { len: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|_| InfoError::NotText)?;
    if is_dtmf {
        return Ok(InfoDtmf {
            digit: parse_signal(text.trim())?,
            duration_ms: None,
        });
    }
    let mut digit = None;
    let mut duration_ms = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("signal") && digit.is_none() {
            digit = Some(parse_signal(value)?);
        } else if key.eq_ignore_ascii_case("duration") {
            // A bad Duration is not worth rejecting the key for.
            duration_ms = value.parse::<u32>().ok();
        }
    }
    Ok(InfoDtmf {
        digit: digit.ok_or(InfoError::MissingSignal)?,
        duration_ms,
    })
}

fn parse_signal(value: &str) -> Result<Digit, InfoError> {
    let mut chars = value.chars();
    let parsed = match (chars.next(), chars.next(), chars.next()) {
        (Some(c), None, None) => Digit::from_char(c),
        // RFC 4733 event code spelling of * and # (and, by extension, 12-15 for A-D).
        (Some('1'), Some(c @ '0'..='5'), None) => Digit::from_event_code(10 + (c as u8 - b'0')),
        _ => None,
    };
    parsed.ok_or_else(|| InfoError::BadSignal {
        value: truncate(value, 16),
    })
}

fn truncate(s: &str, max: usize) -> String {
    s.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= max)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn relay(body: &str) -> Result<InfoDtmf, InfoError> {
        parse_info_body("application/dtmf-relay", body.as_bytes())
    }

    #[test]
    fn dtmf_relay_body_gives_digit_and_duration() {
        assert_eq!(
            relay("Signal=5\r\nDuration=160\r\n"),
            Ok(InfoDtmf {
                digit: Digit::D5,
                duration_ms: Some(160)
            })
        );
    }

    #[test]
    fn dtmf_relay_tolerates_lf_spaces_case_and_extra_lines() {
        let got = relay("signal = *\nDURATION= 250\nfoo\n").unwrap();
        assert_eq!((got.digit, got.duration_ms), (Digit::Star, Some(250)));
        assert_eq!(relay("Signal= #").unwrap().digit, Digit::Pound);
        assert_eq!(relay("Signal=d").unwrap().digit, Digit::D);
        assert_eq!(relay("Signal=1\r\nDuration=x").unwrap().duration_ms, None);
    }

    #[test]
    fn numeric_10_and_11_mean_star_and_pound() {
        assert_eq!(relay("Signal=10").unwrap().digit, Digit::Star);
        assert_eq!(relay("Signal=11").unwrap().digit, Digit::Pound);
        assert_eq!(
            parse_info_body("application/dtmf", b"11\r\n")
                .unwrap()
                .digit,
            Digit::Pound
        );
    }

    #[test]
    fn application_dtmf_body_is_a_single_key() {
        let got = parse_info_body("Application/DTMF; charset=x", b" 7\r\n").unwrap();
        assert_eq!((got.digit, got.duration_ms), (Digit::D7, None));
        assert!(matches!(
            parse_info_body("application/dtmf", b"77"),
            Err(InfoError::BadSignal { .. })
        ));
    }

    #[test]
    fn other_content_types_are_415() {
        let err = parse_info_body("application/media_control+xml", b"<x/>").unwrap_err();
        assert!(matches!(err, InfoError::UnsupportedMediaType { .. }));
        assert_eq!(err.status_code(), 415);
    }

    #[test]
    fn bad_bodies_are_400() {
        assert_eq!(relay("Duration=100"), Err(InfoError::MissingSignal));
        assert!(matches!(
            relay("Signal=E"),
            Err(InfoError::BadSignal { .. })
        ));
        assert_eq!(
            parse_info_body("application/dtmf-relay", &[0xFF, 0xFE]),
            Err(InfoError::NotText)
        );
        let big = vec![b' '; MAX_BODY_LEN + 1];
        assert_eq!(
            parse_info_body("application/dtmf-relay", &big)
                .unwrap_err()
                .status_code(),
            400
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics(ct in ".{0,40}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_info_body(&ct, &body);
            let _ = parse_info_body("application/dtmf-relay", &body);
            let _ = parse_info_body("application/dtmf", &body);
        }
    }
}
