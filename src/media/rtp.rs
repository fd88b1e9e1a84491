//! RTP fixed header parse and build (RFC 3550 §5.1), RTP/RTCP demultiplexing on one port
//! (RFC 5761 §4), and extension of 16-bit sequence numbers and 32-bit timestamps across
//! wrap-around (RFC 3550 Appendix A.1).
//!
//! Parsing borrows from the datagram and never panics: every length is checked before it is
//! used and a bad datagram is an [`RtpError`]. This module does not decide what to do with a
//! packet (the jitter buffer and the RFC 4733 receiver do); it only says what the bytes are.

use thiserror::Error;

/// RTP version this crate speaks (RFC 3550 §5.1: V = 2).
pub const RTP_VERSION: u8 = 2;
/// Length of the fixed header without CSRCs (RFC 3550 §5.1).
pub const FIXED_HEADER_LEN: usize = 12;
/// RFC 3389 comfort noise static payload type (RFC 3551 Table 4).
pub const PT_COMFORT_NOISE: u8 = 13;
/// Largest datagram we accept; anything above is not G.711/telephone-event media.
pub const MAX_DATAGRAM_LEN: usize = 1500;

/// Synchronisation source identifier (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Fewer bytes than the header claims (fixed header, CSRC list, extension or padding).
    #[error("datagram too short: need {needed} bytes, have {actual}")]
    Truncated {
        /// Bytes the header structure requires.
        needed: usize,
        /// Bytes received.
        actual: usize,
    },
    /// Version field is not 2.
    #[error("unsupported RTP version {version}")]
    BadVersion {
        /// The V field found.
        version: u8,
    },
    /// Padding count of zero or larger than the payload (RFC 3550 §5.1, P bit).
    #[error("bad padding length {padding} with {available} bytes after the header")]
    BadPadding {
        /// Last octet of the datagram.
        padding: u8,
        /// Bytes between the end of the header and the end of the datagram.
        available: usize,
    },
    /// Datagram larger than [`MAX_DATAGRAM_LEN`].
    #[error("datagram of {len} bytes exceeds the {MAX_DATAGRAM_LEN} byte limit")]
    TooLong {
        /// Datagram length.
        len: usize,
    },
    /// Building: more than 15 CSRCs or an extension whose length is not a multiple of 4.
    #[error("header cannot be encoded: {reason}")]
    Unencodable {
        /// Which field is out of range.
        reason: &'static str,
    },
}

/// What a datagram on the media port is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// An RTP packet.
    Rtp(RtpPacket<'a>),
    /// RTCP multiplexed on the RTP port (RFC 5761 §4: second octet 192..=223). We do not act
    /// on RTCP; it is recognised so it is not mistaken for media.
    Rtcp {
        /// RTCP packet type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...).
        packet_type: u8,
    },
}

/// RTP header extension (RFC 3550 §5.3.1), kept opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// "defined by profile" field.
    pub profile: u16,
    /// Extension body, a multiple of 4 bytes.
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing from its datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// M bit. For audio: first packet of a talkspurt; for telephone-event: start of an event.
    pub marker: bool,
    /// PT, 7 bits.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp (8 kHz clock for G.711 and telephone-event).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: Ssrc,
    /// Raw CSRC list, 4 bytes per entry (CC entries).
    csrc_bytes: &'a [u8],
    /// Header extension, when X is set.
    pub extension: Option<Extension<'a>>,
    /// Payload with padding removed.
    pub payload: &'a [u8],
    /// Number of padding octets that were removed (0 when P is clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// CSRC identifiers (RFC 3550 §5.1, at most 15).
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        self.csrc_bytes
            .chunks_exact(4)
            .map(|c| Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// Number of CSRCs.
    pub fn csrc_count(&self) -> usize {
        self.csrc_bytes.len() / 4
    }

    /// RFC 3389 comfort noise: carries no samples we can play; receivers ignore it.
    pub fn is_comfort_noise(&self) -> bool {
        self.payload_type == PT_COMFORT_NOISE
    }
}

/// Classify and parse one datagram received on the media port.
pub fn parse(buf: &[u8]) -> Result<Datagram<'_>, RtpError> {
    if buf.len() > MAX_DATAGRAM_LEN {
        return Err(RtpError::TooLong { len: buf.len() });
    }
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Err(RtpError::Truncated {
            needed: 2,
            actual: buf.len(),
        });
    };
    let version = b0 >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion { version });
    }
    // RFC 5761 §4: RTCP packet types 192..=223 occupy the M+PT octet; RTP payload types
    // 64..=95 are therefore never used when multiplexing, and such an octet means RTCP.
    if (192..=223).contains(&b1) {
        return Ok(Datagram::Rtcp { packet_type: b1 });
    }
    parse_rtp(buf).map(Datagram::Rtp)
}

/// Parse an RTP packet (no RTCP check; see [`parse`]).
pub fn parse_rtp(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    let header: &[u8; FIXED_HEADER_LEN] = buf
        .get(..FIXED_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(RtpError::Truncated {
            needed: FIXED_HEADER_LEN,
            actual: buf.len(),
        })?;
    let version = header[0] >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion { version });
    }
    let has_padding = header[0] & 0x20 != 0;
    let has_extension = header[0] & 0x10 != 0;
    let csrc_count = usize::from(header[0] & 0x0F);
    let marker = header[1] & 0x80 != 0;
    let payload_type = header[1] & 0x7F;
    let sequence = u16::from_be_bytes([header[2], header[3]]);
    let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let ssrc = Ssrc(u32::from_be_bytes([
        header[8], header[9], header[10], header[11],
    ]));

    let mut offset = FIXED_HEADER_LEN;
    let csrc_end = offset + 4 * csrc_count;
    let csrc_bytes = buf.get(offset..csrc_end).ok_or(RtpError::Truncated {
        needed: csrc_end,
        actual: buf.len(),
    })?;
    offset = csrc_end;

    let extension = if has_extension {
        // RFC 3550 §5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the words.
        let ext_header = buf.get(offset..offset + 4).ok_or(RtpError::Truncated {
            needed: offset + 4,
            actual: buf.len(),
        })?;
        let profile = u16::from_be_bytes([ext_header[0], ext_header[1]]);
        let words = usize::from(u16::from_be_bytes([ext_header[2], ext_header[3]]));
        let data_start = offset + 4;
        let data_end = data_start + 4 * words;
        let data = buf.get(data_start..data_end).ok_or(RtpError::Truncated {
            needed: data_end,
            actual: buf.len(),
        })?;
        offset = data_end;
        Some(Extension { profile, data })
    } else {
        None
    };

    // offset <= buf.len() here: every step above was a checked `get`.
    let rest = buf.get(offset..).unwrap_or(&[]);
    let (payload, padding) = if has_padding {
        // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
        let padding = rest.last().copied().unwrap_or(0);
        if padding == 0 || usize::from(padding) > rest.len() {
            return Err(RtpError::BadPadding {
                padding,
                available: rest.len(),
            });
        }
        (&rest[..rest.len() - usize::from(padding)], padding)
    } else {
        (rest, 0)
    };

    Ok(RtpPacket {
        marker,
        payload_type,
        sequence,
        timestamp,
        ssrc,
        csrc_bytes,
        extension,
        payload,
        padding,
    })
}

/// Fields of an RTP header to send. We never send CSRCs, extensions or padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// M bit.
    pub marker: bool,
    /// PT, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Our SSRC.
    pub ssrc: Ssrc,
}

impl RtpHeader {
    /// Append the 12-byte header and `payload` to `out` (which the caller reuses per packet).
    pub fn write(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::Unencodable {
                reason: "payload type above 127",
            });
        }
        let len = FIXED_HEADER_LEN + payload.len();
        if len > MAX_DATAGRAM_LEN {
            return Err(RtpError::TooLong { len });
        }
        out.reserve(len);
        out.push(RTP_VERSION << 6);
        out.push((u8::from(self.marker) << 7) | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.0.to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// The sending side of one RTP stream: our SSRC, the next sequence number and the media
/// clock. Initial values are random per RFC 3550 §5.1; the caller draws them from its
/// injected RNG, so this type stays deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpSendStream {
    ssrc: Ssrc,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    first: bool,
}

impl RtpSendStream {
    /// A stream starting at the given (random) sequence number and timestamp.
    pub fn new(
        ssrc: Ssrc,
        payload_type: u8,
        initial_sequence: u16,
        initial_timestamp: u32,
    ) -> Self {
        Self {
            ssrc,
            payload_type,
            sequence: initial_sequence,
            timestamp: initial_timestamp,
            first: true,
        }
    }

    /// Header for the next audio packet carrying `samples` samples; advances the clock.
    /// The first packet of the stream has the marker bit (RFC 3551 §4.1: start of a
    /// talkspurt).
    pub fn audio_header(&mut self, samples: u32) -> RtpHeader {
        let header = RtpHeader {
            marker: std::mem::take(&mut self.first),
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        header
    }

    /// Header for a packet of another payload type on the same stream (RFC 4733 events go
    /// in the audio's RTP stream, sharing its SSRC and sequence numbers): takes the next
    /// sequence number, leaves the media clock alone.
    pub fn other_header(&mut self, payload_type: u8, marker: bool, timestamp: u32) -> RtpHeader {
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        header
    }

    /// Advance the media clock without sending (silence suppressed, or samples replaced by
    /// telephone-events).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Timestamp the next audio packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }
}

/// Extends a 16-bit RTP sequence number to 64 bits by choosing, for each new value, the
/// candidate nearest to the highest one seen (RFC 3550 A.1 keeps `cycles` the same way; a
/// jump of more than half the space backwards is read as a wrap forwards and vice versa).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceExtender {
    highest: Option<u64>,
}

impl SequenceExtender {
    /// A fresh extender; the first value seen maps to itself plus 2^16 (so that reordered
    /// packets just before it still have a non-negative extended value).
    pub fn new() -> Self {
        Self::default()
    }

    /// Extend `seq`; updates the highest value when `seq` is newer.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            let first = (1u64 << 16) + u64::from(seq);
            self.highest = Some(first);
            return first;
        };
        // Reinterpreting the wrapped difference as i16 picks the nearest candidate.
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        let extended = highest.saturating_add_signed(delta);
        if delta > 0 {
            self.highest = Some(extended);
        }
        extended
    }

    /// Highest extended sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// Extends a 32-bit RTP timestamp to 64 bits, like [`SequenceExtender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimestampExtender {
    highest: Option<u64>,
}

impl TimestampExtender {
    /// A fresh extender; the first value maps to itself plus 2^32.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extend `ts`; updates the highest value when `ts` is newer.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let Some(highest) = self.highest else {
            let first = (1u64 << 32) + u64::from(ts);
            self.highest = Some(first);
            return first;
        };
        let delta = i64::from(ts.wrapping_sub(highest as u32) as i32);
        let extended = highest.saturating_add_signed(delta);
        if delta > 0 {
            self.highest = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpHeader {
            marker,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: Ssrc(0xDEAD_BEEF),
        }
        .write(payload, &mut out)
        .unwrap();
        out
    }

    #[test]
    fn parses_a_minimal_pcmu_packet() {
        let bytes = packet(0, true, 7, 160, &[0xFF; 160]);
        let Datagram::Rtp(p) = parse(&bytes).unwrap() else {
            panic!("not RTP")
        };
        assert!(p.marker);
        assert_eq!((p.payload_type, p.sequence, p.timestamp), (0, 7, 160));
        assert_eq!(p.ssrc, Ssrc(0xDEAD_BEEF));
        assert_eq!(p.payload.len(), 160);
        assert_eq!(p.csrc_count(), 0);
        assert!(p.extension.is_none());
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped_to_reach_the_payload() {
        let mut bytes = vec![0x80 | 0x20 | 0x10 | 2, 8, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 10]); // two CSRCs
        bytes.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // one-word extension
        bytes.extend_from_slice(&[0xAA, 0xBB]); // payload
        bytes.extend_from_slice(&[0, 0, 3]); // three padding octets
        let p = parse_rtp(&bytes).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![Ssrc(9), Ssrc(10)]);
        let ext = p.extension.unwrap();
        assert_eq!((ext.profile, ext.data), (0xBEDE, &[1u8, 2, 3, 4][..]));
        assert_eq!(p.payload, &[0xAA, 0xBB]);
        assert_eq!(p.padding, 3);
    }

    #[test]
    fn short_and_inconsistent_packets_are_errors() {
        assert!(matches!(parse(&[]), Err(RtpError::Truncated { .. })));
        assert!(matches!(
            parse(&[0x80, 0, 0]),
            Err(RtpError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&[0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::BadVersion { version: 1 })
        ));
        // CC = 15 but no CSRCs present.
        let mut b = packet(0, false, 1, 1, &[]);
        b[0] |= 0x0F;
        assert!(matches!(
            parse(&b),
            Err(RtpError::Truncated { needed: 72, .. })
        ));
        // Padding of zero and padding longer than the payload.
        let mut b = packet(0, false, 1, 1, &[1, 0]);
        b[0] |= 0x20;
        assert!(matches!(
            parse(&b),
            Err(RtpError::BadPadding { padding: 0, .. })
        ));
        let mut b = packet(0, false, 1, 1, &[1, 9]);
        b[0] |= 0x20;
        assert!(matches!(
            parse(&b),
            Err(RtpError::BadPadding { padding: 9, .. })
        ));
        // Extension length running past the end.
        let mut b = packet(0, false, 1, 1, &[0, 0, 0, 5]);
        b[0] |= 0x10;
        assert!(matches!(parse(&b), Err(RtpError::Truncated { .. })));
        assert!(matches!(
            parse(&vec![0x80; MAX_DATAGRAM_LEN + 1]),
            Err(RtpError::TooLong { .. })
        ));
    }

    #[test]
    fn rtcp_packet_types_are_recognised_not_parsed_as_media() {
        for pt in 200..=204u8 {
            let b = [0x81, pt, 0, 1, 0, 0, 0, 1];
            assert_eq!(parse(&b), Ok(Datagram::Rtcp { packet_type: pt }));
        }
    }

    #[test]
    fn comfort_noise_is_flagged() {
        let b = packet(PT_COMFORT_NOISE, false, 1, 1, &[40]);
        let Datagram::Rtp(p) = parse(&b).unwrap() else {
            panic!("not RTP")
        };
        assert!(p.is_comfort_noise());
    }

    #[test]
    fn sequence_numbers_extend_across_the_wrap() {
        let mut ext = SequenceExtender::new();
        let base = ext.extend(65534);
        assert_eq!(ext.extend(65535), base + 1);
        assert_eq!(ext.extend(0), base + 2);
        assert_eq!(ext.extend(1), base + 3);
        // A late packet from before the wrap stays before it.
        assert_eq!(ext.extend(65535), base + 1);
        assert_eq!(ext.highest(), Some(base + 3));
    }

    #[test]
    fn timestamps_extend_across_the_wrap() {
        let mut ext = TimestampExtender::new();
        let base = ext.extend(u32::MAX - 159);
        assert_eq!(ext.extend(0), base + 160);
        assert_eq!(ext.extend(u32::MAX - 319), base - 160);
    }

    #[test]
    fn send_stream_numbers_packets_and_interleaves_events() {
        let mut st = RtpSendStream::new(Ssrc(5), 0, 65_535, u32::MAX - 159);
        let a = st.audio_header(160);
        assert!(a.marker);
        assert_eq!((a.sequence, a.timestamp), (65_535, u32::MAX - 159));
        let ev_ts = st.timestamp();
        let e = st.other_header(101, true, ev_ts);
        assert_eq!((e.sequence, e.timestamp, e.payload_type), (0, 0, 101));
        let b = st.audio_header(160);
        assert!(!b.marker);
        assert_eq!((b.sequence, b.timestamp), (1, 0));
        st.skip(320);
        assert_eq!(st.audio_header(160).timestamp, 480);
        assert_eq!(st.ssrc(), Ssrc(5));
    }

    #[test]
    fn building_rejects_oversized_payload_types_and_datagrams() {
        let mut out = Vec::new();
        let h = RtpHeader {
            marker: false,
            payload_type: 128,
            sequence: 0,
            timestamp: 0,
            ssrc: Ssrc(1),
        };
        assert!(h.write(&[], &mut out).is_err());
        let h = RtpHeader {
            payload_type: 0,
            ..h
        };
        assert!(h.write(&[0; MAX_DATAGRAM_LEN], &mut out).is_err());
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
            let _ = parse_rtp(&bytes);
        }

        #[test]
        fn build_then_parse_round_trips(marker: bool, pt in 0u8..=127, seq: u16, ts: u32, ssrc: u32,
                                        payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            // PT 64..=95 with M collide with RTCP under RFC 5761; parse_rtp still takes them.
            let mut out = Vec::new();
            let h = RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc: Ssrc(ssrc) };
            h.write(&payload, &mut out).unwrap();
            let p = parse_rtp(&out).unwrap();
            prop_assert_eq!((p.marker, p.payload_type, p.sequence, p.timestamp, p.ssrc),
                            (marker, pt, seq, ts, Ssrc(ssrc)));
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn sequence_extension_is_monotonic_for_in_order_streams(start: u16, steps in proptest::collection::vec(1u16..1000, 1..200)) {
            let mut ext = SequenceExtender::new();
            let mut seq = start;
            let mut prev = ext.extend(seq);
            for step in steps {
                seq = seq.wrapping_add(step);
                let now = ext.extend(seq);
                prop_assert_eq!(now, prev + u64::from(step));
                prev = now;
            }
        }
    }
}
