//! RFC 3264 offer/answer for one audio stream: answering an offer, making our offer, reading
//! the answer to it.
//!
//! Answer rules (RFC 3264 §6 and §6.1): the first audio `RTP/AVP` line with a non-zero port,
//! an IP connection address and a codec of ours is accepted; every other line is answered with
//! port 0, keeping its media type, proto and formats, so the answer has the same lines in the
//! same order. The codec is the first of *our* preferences the line offers, on the offerer's
//! payload type number; `telephone-event/8000` keeps the offerer's number too.

use std::net::{IpAddr, SocketAddr};

use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use super::parse::{self, ConnAddr, ParsedMedia};
use super::payload::{static_payload, Codec, MAX_PAYLOAD_TYPE};
use super::{Answer, Direction, LocalMedia, NegotiatedMedia, SdpError, DEFAULT_PTIME_MS};

/// The payload type we give `telephone-event/8000` in our own offers (a dynamic type, RFC 3551
/// §3; 101 is what most PBXs use, which keeps captures readable).
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// Events we receive: DTMF 0–9, *, #, A–D (RFC 4733 §3.2, Table 7; §7.1.1 `fmtp`).
const TELEPHONE_EVENT_FMTP: &str = "0-15";

/// Packetization times we honour from a peer; anything outside falls back to ours. G.711 works
/// at any multiple of 0.125 ms, but below 10 ms or above 120 ms is a peer bug, not a wish.
const PTIME_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=120;

/// The only transport we accept for audio (RFC 3551). `RTP/SAVP` needs SRTP keys we never
/// negotiate and `RTP/AVPF` feedback we never send, so those lines are refused.
const AUDIO_PROTO: &str = "RTP/AVP";

/// `o=` user name and `s=` session name in what we write (RFC 8866 §5.2, §5.3).
const SDP_USER: &str = "dialback";

/// Answers an SDP offer (RFC 3264 §6). On [`SdpError::NoAcceptableCodec`] the caller answers
/// 488 Not Acceptable Here (RFC 3261 §21.4.26).
pub fn answer(offer: &[u8], local: &LocalMedia) -> Result<Answer, SdpError> {
    let parsed = parse::parse(offer)?;
    let (index, choice) = parsed
        .media
        .iter()
        .enumerate()
        .find_map(|(i, m)| accept_audio_line(m, local).map(|c| (i, c)))
        .ok_or(SdpError::NoAcceptableCodec)?;
    // `index` came from enumerating `parsed.media`, so the lookup succeeds; stay total anyway.
    let offered = parsed
        .media
        .get(index)
        .ok_or(SdpError::NoAcceptableCodec)?;
    let media = negotiated(index, offered, choice, local)?;

    let mut sections = Vec::with_capacity(parsed.media.len());
    for (i, m) in parsed.media.iter().enumerate() {
        sections.push(if i == index {
            audio_section(
                local.rtp_port,
                &[(media.codec, media.payload_type)],
                media.telephone_event_pt,
                media.ptime_ms,
                media.direction,
            )
        } else {
            refused_section(m)
        });
    }
    Ok(Answer {
        sdp: session(local, sections),
        media,
    })
}

/// Our offer for an outgoing call (RFC 3264 §5): one audio `RTP/AVP` line with our codecs on
/// their static payload types, `telephone-event/8000` on [`OFFER_TELEPHONE_EVENT_PT`] if
/// enabled, our ptime and `sendrecv`.
pub fn offer(local: &LocalMedia) -> Vec<u8> {
    let mut codecs: Vec<(Codec, u8)> = Vec::with_capacity(local.codecs.len());
    for c in &local.codecs {
        if !codecs.iter().any(|(have, _)| have == c) {
            codecs.push((*c, c.static_payload_type()));
        }
    }
    let te = local.telephone_event.then_some(OFFER_TELEPHONE_EVENT_PT);
    let ptime = if local.ptime_ms == 0 {
        DEFAULT_PTIME_MS
    } else {
        local.ptime_ms
    };
    session(
        local,
        vec![audio_section(
            local.rtp_port,
            &codecs,
            te,
            ptime,
            Direction::SendRecv,
        )],
    )
}

/// Reads the answer to our [`offer`] made from `offered` (RFC 3264 §7): one audio line, not
/// refused, naming one of the codecs we offered.
pub fn accept_answer(offered: &LocalMedia, answer: &[u8]) -> Result<NegotiatedMedia, SdpError> {
    let parsed = parse::parse(answer)?;
    let [m] = parsed.media.as_slice() else {
        return Err(SdpError::MediaCountMismatch {
            offered: 1,
            answered: parsed.media.len(),
        });
    };
    if m.media != "audio" || m.proto != AUDIO_PROTO {
        return Err(SdpError::MediaMismatch {
            media: m.media.clone(),
            proto: m.proto.clone(),
        });
    }
    if m.port == 0 {
        return Err(SdpError::MediaRejected);
    }
    // RFC 3264 §6.1: the answerer lists its formats in preference order; take the first we
    // offered.
    let (codec, payload_type) = payload_types(m)
        .find_map(|pt| {
            codec_of(m, pt)
                .filter(|c| offered.codecs.contains(c))
                .map(|c| (c, pt))
        })
        .ok_or(SdpError::NoAcceptableCodec)?;
    let choice = Choice {
        codec,
        payload_type,
        telephone_event_pt: if offered.telephone_event {
            telephone_event_pt(m)
        } else {
            None
        },
    };
    negotiated(0, m, choice, offered)
}

/// What we take from an acceptable audio line.
#[derive(Debug, Clone, Copy)]
struct Choice {
    codec: Codec,
    payload_type: u8,
    telephone_event_pt: Option<u8>,
}

/// Our codec choice for an offered line, or `None` if we must refuse the line.
fn accept_audio_line(m: &ParsedMedia, local: &LocalMedia) -> Option<Choice> {
    if m.media != "audio" || m.proto != AUDIO_PROTO || m.port == 0 {
        return None;
    }
    if let Some(ConnAddr::Ip(ip)) = m.connection {
        // A multicast session is not a call to us (RFC 3264 §6.2 has the answerer join it,
        // which we never do).
        if ip.is_multicast() {
            return None;
        }
    }
    let (codec, payload_type) = local.codecs.iter().find_map(|want| {
        payload_types(m)
            .find(|pt| codec_of(m, *pt) == Some(*want))
            .map(|pt| (*want, pt))
    })?;
    Some(Choice {
        codec,
        payload_type,
        telephone_event_pt: if local.telephone_event {
            telephone_event_pt(m)
        } else {
            None
        },
    })
}

fn negotiated(
    index: usize,
    m: &ParsedMedia,
    choice: Choice,
    local: &LocalMedia,
) -> Result<NegotiatedMedia, SdpError> {
    let ip = match &m.connection {
        Some(ConnAddr::Ip(ip)) => *ip,
        Some(ConnAddr::Name(name)) => {
            return Err(SdpError::UnsupportedAddress {
                index,
                address: name.clone(),
            })
        }
        None => return Err(SdpError::MissingConnection { index }),
    };
    // RFC 3264 §8.4: sendonly (or inactive) holds the stream; RFC 2543 used c=0.0.0.0, which
    // RFC 3264 §8.4 still requires an answerer to accept.
    let on_hold =
        ip.is_unspecified() || matches!(m.direction, Direction::SendOnly | Direction::Inactive);
    Ok(NegotiatedMedia {
        remote_addr: SocketAddr::new(ip, m.port),
        codec: choice.codec,
        payload_type: choice.payload_type,
        telephone_event_pt: choice.telephone_event_pt,
        ptime_ms: ptime(m, local),
        direction: m.direction.reversed(),
        on_hold,
    })
}

/// RFC 8866 §6.4: `a=ptime` is the packet time the peer wants to receive; honour it when sane,
/// else use ours, and never exceed `a=maxptime` (§6.5).
fn ptime(m: &ParsedMedia, local: &LocalMedia) -> u8 {
    let ours = if local.ptime_ms == 0 {
        DEFAULT_PTIME_MS
    } else {
        local.ptime_ms
    };
    let mut ptime = m
        .ptime_ms
        .filter(|p| PTIME_RANGE_MS.contains(p))
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(ours);
    if let Some(max) = m
        .maxptime_ms
        .filter(|p| PTIME_RANGE_MS.contains(p))
        .and_then(|p| u8::try_from(p).ok())
    {
        ptime = ptime.min(max);
    }
    ptime
}

/// The line's formats that are RTP payload type numbers (RFC 3551 §3: 0–127), in order.
fn payload_types(m: &ParsedMedia) -> impl Iterator<Item = u8> + '_ {
    m.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt <= MAX_PAYLOAD_TYPE)
}

/// The codec a payload type names on this line: by `a=rtpmap` if present (it may rename even a
/// static type, RFC 8866 §6.6), else by the RFC 3551 §6 static table.
fn codec_of(m: &ParsedMedia, pt: u8) -> Option<Codec> {
    match m.rtpmaps.iter().find(|r| r.payload_type == pt) {
        Some(r) => Codec::from_encoding(&r.encoding_name, r.clock_rate, r.channels),
        None => {
            let s = static_payload(pt)?;
            Codec::from_encoding(s.encoding_name, s.clock_rate, s.channels)
        }
    }
}

/// The first `telephone-event/8000` payload type on the line (RFC 4733 §7.1.1). A
/// `telephone-event/16000` entry (for wideband codecs) is recognised and passed over: events
/// must share the audio codec's clock (RFC 4733 §2.1), which is 8000 Hz for G.711.
fn telephone_event_pt(m: &ParsedMedia) -> Option<u8> {
    payload_types(m).find(|pt| {
        m.rtpmaps.iter().any(|r| {
            r.payload_type == *pt
                && r.encoding_name.eq_ignore_ascii_case("telephone-event")
                && r.clock_rate == Codec::CLOCK_RATE
        })
    })
}

/// The accepted audio section of an offer or answer.
fn audio_section(
    port: u16,
    codecs: &[(Codec, u8)],
    telephone_event_pt: Option<u8>,
    ptime_ms: u8,
    direction: Direction,
) -> MediaDescription {
    let mut formats: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
    let mut attributes: Vec<Attribute> = codecs
        .iter()
        .map(|(c, pt)| {
            attr(
                "rtpmap",
                Some(format!(
                    "{pt} {}/{}",
                    c.encoding_name(),
                    Codec::CLOCK_RATE
                )),
            )
        })
        .collect();
    if let Some(pt) = telephone_event_pt {
        formats.push(pt.to_string());
        attributes.push(attr(
            "rtpmap",
            Some(format!("{pt} telephone-event/{}", Codec::CLOCK_RATE)),
        ));
        attributes.push(attr("fmtp", Some(format!("{pt} {TELEPHONE_EVENT_FMTP}"))));
    }
    attributes.push(attr("ptime", Some(ptime_ms.to_string())));
    attributes.push(attr(direction.attribute(), None));
    MediaDescription {
        media_name: MediaName {
            media: "audio".to_owned(),
            port: RangedPort {
                // Lossless: every target we build for has isize of 32 bits or more.
                value: port as isize,
                range: None,
            },
            protos: vec![AUDIO_PROTO.to_owned()],
            formats,
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes,
    }
}

/// A refused line: same media, proto and formats, port 0, no attributes (RFC 3264 §6).
fn refused_section(m: &ParsedMedia) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            media: m.media.clone(),
            port: RangedPort {
                value: 0,
                range: None,
            },
            protos: vec![m.proto.clone()],
            formats: m.formats.clone(),
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes: vec![],
    }
}

/// Wraps sections in the session lines (RFC 8866 §5: v, o, s, c, t) and writes the body.
fn session(local: &LocalMedia, media: Vec<MediaDescription>) -> Vec<u8> {
    let address_type = match local.addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let desc = SessionDescription {
        version: 0,
        origin: Origin {
            username: SDP_USER.to_owned(),
            session_id: local.session_id,
            session_version: local.session_version,
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            unicast_address: local.addr.to_string(),
        },
        session_name: SDP_USER.to_owned(),
        session_information: None,
        uri: None,
        email_address: None,
        phone_number: None,
        connection_information: Some(ConnectionInformation {
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            address: Some(Address {
                address: local.addr.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        bandwidth: vec![],
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        time_zones: vec![],
        encryption_key: None,
        attributes: vec![],
        media_descriptions: media,
    };
    desc.marshal().into_bytes()
}

fn attr(key: &str, value: Option<String>) -> Attribute {
    Attribute {
        key: key.to_owned(),
        value,
    }
}
