//! SDP offer/answer for one G.711 audio stream plus RFC 4733 telephone-events.
//!
//! Owns: reading SDP bodies (RFC 8866, which obsoletes RFC 4566), answering an offer
//! ([`answer`], RFC 3264 §6), building our own offer for the callback leg ([`offer`], RFC 3264
//! §5) and reading the answer to it ([`accept_answer`], RFC 3264 §7). We negotiate exactly one
//! audio stream, `RTP/AVP` with PCMU or PCMA (RFC 3551 §4.5.14) and optionally
//! `telephone-event/8000` (RFC 4733 §7.1); every other `m=` line is refused with port 0 so the
//! answer mirrors the offer line for line (RFC 3264 §6).
//!
//! Parsing uses the `sdp` crate (webrtc-rs) behind our private `parse` module: it keeps unknown attributes, which
//! a correct answer needs. None of its types leave this module. Everything here is pure: no
//! clock, no sockets, no randomness (session id and version come in [`LocalMedia`]), and bad
//! input is an [`SdpError`], never a panic. Bodies are capped at [`MAX_SDP_LEN`] bytes and
//! [`MAX_MEDIA_LINES`] `m=` lines.

mod negotiate;
mod parse;
pub mod payload;

use std::net::{IpAddr, SocketAddr};

pub use negotiate::{accept_answer, answer, offer, OFFER_TELEPHONE_EVENT_PT};
pub use payload::Codec;

/// Largest SDP body we parse, in bytes. Real offers with video and ICE stay under 8 KiB.
pub const MAX_SDP_LEN: usize = 32 * 1024;

/// Most `m=` lines we answer; each needs a line in the answer (RFC 3264 §6).
pub const MAX_MEDIA_LINES: usize = 16;

/// Packetization time used when the offer states none (RFC 3551 §4.5: 20 ms default for
/// frame-less audio such as G.711).
pub const DEFAULT_PTIME_MS: u8 = 20;

/// What we offer or accept: our address, port and codec preferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address, written in `o=` and `c=`.
    pub addr: IpAddr,
    /// Our RTP port (RTCP on the next port, RFC 3550 §11).
    pub rtp_port: u16,
    /// Codecs in our order of preference; an empty list accepts nothing.
    pub codecs: Vec<Codec>,
    /// Whether we offer or accept RFC 4733 `telephone-event/8000`.
    pub telephone_event: bool,
    /// Our packetization time when the peer states none (RFC 8866 §6.4).
    pub ptime_ms: u8,
    /// `o=` session id (RFC 8866 §5.2), chosen by the caller.
    pub session_id: u64,
    /// `o=` session version, incremented by the caller on each new offer or answer.
    pub session_version: u64,
}

/// A stream direction (RFC 8866 §6.7; RFC 3264 §5.1), from the point of view of the side that
/// wrote the SDP it appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answerer writes for an offered direction when it is willing to both
    /// send and receive (RFC 3264 §6.1: sendonly → recvonly, recvonly → sendonly, inactive →
    /// inactive, sendrecv → sendrecv). The same mapping turns the peer's view into ours.
    pub const fn reversed(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The attribute name (RFC 8866 §6.7).
    pub const fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether we may send RTP in this direction (our point of view).
    pub const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether we expect RTP in this direction (our point of view).
    pub const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub(crate) fn from_attribute(key: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.attribute() == key)
    }
}

/// The outcome of negotiation for the one audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// Where to send RTP: the stream's `c=` address and `m=` port. `0.0.0.0` when the peer
    /// holds the call the RFC 2543 way.
    pub remote_addr: SocketAddr,
    /// The codec both sides use.
    pub codec: Codec,
    /// Its payload type on the wire (the offerer's number, RFC 3264 §6.1).
    pub payload_type: u8,
    /// The `telephone-event/8000` payload type, if both sides support RFC 4733 events.
    pub telephone_event_pt: Option<u8>,
    /// Packetization time both sides use, in milliseconds.
    pub ptime_ms: u8,
    /// Our direction: whether we send, receive, both or neither.
    pub direction: Direction,
    /// The peer put the stream on hold (RFC 3264 §8.4: sendonly or inactive; RFC 2543:
    /// `c=0.0.0.0`). Send no RTP while this is set.
    pub on_hold: bool,
}

/// Our answer to an offer: the body to send and what it agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer SDP body (`application/sdp`), CRLF line ends.
    pub sdp: Vec<u8>,
    /// The negotiated audio stream.
    pub media: NegotiatedMedia,
}

/// Errors from reading or negotiating SDP, grouped by cause: the peer sent something we cannot
/// read, or something we can read but cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_LEN`].
    #[error("SDP body of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The body is not UTF-8 (RFC 8866 §5 permits other charsets only in free text fields we
    /// never need; we refuse them).
    #[error("SDP body is not UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// The body breaks RFC 8866 §9 grammar (line order, field count, number syntax).
    #[error("malformed SDP: {reason}")]
    Malformed { reason: String },
    /// More `m=` lines than [`MAX_MEDIA_LINES`].
    #[error("SDP has {count} m-lines, more than the limit of {max}")]
    TooManyMediaLines { count: usize, max: usize },
    /// No audio `m=` line offers a codec of ours: answer 488 Not Acceptable Here
    /// (RFC 3261 §21.4.26).
    #[error("no audio m-line offers an acceptable codec")]
    NoAcceptableCodec,
    /// The chosen audio line has no `c=` line at media or session level (RFC 8866 §5.7).
    #[error("m-line {index} has no connection address at media or session level")]
    MissingConnection { index: usize },
    /// The chosen audio line's connection address is not an IP literal (an FQDN, which a
    /// sans-IO module cannot resolve).
    #[error("m-line {index} has connection address {address:?}, not an IP literal")]
    UnsupportedAddress { index: usize, address: String },
    /// The answer does not have one `m=` line per offered line (RFC 3264 §6).
    #[error("answer has {answered} m-lines, the offer had {offered}")]
    MediaCountMismatch { offered: usize, answered: usize },
    /// The answer's line is not the audio `RTP/AVP` line we offered (RFC 3264 §6).
    #[error("answer m-line is {media:?} {proto:?}, the offer had audio RTP/AVP")]
    MediaMismatch { media: String, proto: String },
    /// The answerer refused our audio stream with port 0 (RFC 3264 §6).
    #[error("answer refused the audio stream (port 0)")]
    MediaRejected,
}
