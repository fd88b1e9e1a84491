//! The RFC 3551 static payload-type table (§6, Tables 4 and 5) and the audio codecs we carry.
//!
//! Static payload types may appear in an `m=` line without an `a=rtpmap` (RFC 3551 §6;
//! RFC 8866 §6.6), so the table is how we name them. Dynamic types (96–127) are named only by
//! `a=rtpmap`. Encoding names compare case-insensitively (RFC 4855 §3, RFC 8866 §6.6).

/// A codec this crate can send and receive (G.711, ITU-T G.711 §A and §B via RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law, RTP encoding name `PCMU`, static payload type 0.
    Pcmu,
    /// G.711 A-law, RTP encoding name `PCMA`, static payload type 8.
    Pcma,
}

impl Codec {
    /// The RFC 3551 §6 static payload type.
    pub const fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The RTP encoding name (RFC 3551 §6, Table 4).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Both G.711 laws run at 8000 Hz, one channel (RFC 3551 §4.5.14).
    pub const CLOCK_RATE: u32 = 8000;

    /// The codec for an encoding name, clock rate and channel count, if it is one of ours.
    pub(crate) fn from_encoding(name: &str, clock_rate: u32, channels: u16) -> Option<Codec> {
        if clock_rate != Self::CLOCK_RATE || channels != 1 {
            return None;
        }
        [Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }
}

/// One row of the RFC 3551 §6 static table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPayload {
    /// Payload type number, 0–95.
    pub payload_type: u8,
    /// Encoding name as registered.
    pub encoding_name: &'static str,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels (video rows say 1).
    pub channels: u16,
}

const fn row(
    payload_type: u8,
    encoding_name: &'static str,
    clock_rate: u32,
    channels: u16,
) -> StaticPayload {
    StaticPayload {
        payload_type,
        encoding_name,
        clock_rate,
        channels,
    }
}

/// RFC 3551 §6 Table 4 (audio) and Table 5 (video). G722 is 8000 on the RTP clock though it
/// samples at 16 kHz (RFC 3551 §4.5.2, a historical error kept for compatibility).
pub const STATIC_PAYLOAD_TYPES: &[StaticPayload] = &[
    row(0, "PCMU", 8000, 1),
    row(3, "GSM", 8000, 1),
    row(4, "G723", 8000, 1),
    row(5, "DVI4", 8000, 1),
    row(6, "DVI4", 16000, 1),
    row(7, "LPC", 8000, 1),
    row(8, "PCMA", 8000, 1),
    row(9, "G722", 8000, 1),
    row(10, "L16", 44100, 2),
    row(11, "L16", 44100, 1),
    row(12, "QCELP", 8000, 1),
    row(13, "CN", 8000, 1),
    row(14, "MPA", 90000, 1),
    row(15, "G728", 8000, 1),
    row(16, "DVI4", 11025, 1),
    row(17, "DVI4", 22050, 1),
    row(18, "G729", 8000, 1),
    row(25, "CelB", 90000, 1),
    row(26, "JPEG", 90000, 1),
    row(28, "nv", 90000, 1),
    row(31, "H261", 90000, 1),
    row(32, "MPV", 90000, 1),
    row(33, "MP2T", 90000, 1),
    row(34, "H263", 90000, 1),
];

/// The static table row for a payload type, if RFC 3551 assigns one.
pub fn static_payload(payload_type: u8) -> Option<&'static StaticPayload> {
    STATIC_PAYLOAD_TYPES
        .iter()
        .find(|p| p.payload_type == payload_type)
}

/// First payload type of the dynamic range (RFC 3551 §3).
pub const FIRST_DYNAMIC_PAYLOAD_TYPE: u8 = 96;

/// Largest RTP payload type: the field is 7 bits (RFC 3550 §5.1).
pub const MAX_PAYLOAD_TYPE: u8 = 127;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_static_types_match_rfc3551_table4() {
        assert_eq!(static_payload(0).map(|p| p.encoding_name), Some("PCMU"));
        assert_eq!(static_payload(8).map(|p| p.encoding_name), Some("PCMA"));
        assert_eq!(static_payload(13).map(|p| p.encoding_name), Some("CN"));
        assert_eq!(static_payload(18).map(|p| p.encoding_name), Some("G729"));
        assert_eq!(static_payload(9).map(|p| p.clock_rate), Some(8000));
        assert_eq!(static_payload(96), None);
        assert_eq!(Codec::Pcmu.static_payload_type(), 0);
        assert_eq!(Codec::Pcma.static_payload_type(), 8);
    }

    #[test]
    fn encoding_names_match_case_insensitively_at_8000_mono_only() {
        assert_eq!(Codec::from_encoding("pcmu", 8000, 1), Some(Codec::Pcmu));
        assert_eq!(Codec::from_encoding("PcMa", 8000, 1), Some(Codec::Pcma));
        assert_eq!(Codec::from_encoding("PCMU", 16000, 1), None);
        assert_eq!(Codec::from_encoding("PCMU", 8000, 2), None);
        assert_eq!(Codec::from_encoding("G729", 8000, 1), None);
    }
}
