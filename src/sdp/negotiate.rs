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
    let offered = parsed.media.get(index).ok_or(SdpError::NoAcceptableCodec)?;
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
    if !is_audio_rtp_avp(m) {
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
    if !is_audio_rtp_avp(m) || m.port == 0 {
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

/// Media types and proto identifiers are tokens registered with IANA in one spelling, but
/// some gateways vary the case; compare without it.
fn is_audio_rtp_avp(m: &ParsedMedia) -> bool {
    m.media.eq_ignore_ascii_case("audio") && m.proto.eq_ignore_ascii_case(AUDIO_PROTO)
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
                Some(format!("{pt} {}/{}", c.encoding_name(), Codec::CLOCK_RATE)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "203.0.113.5".parse().expect("ip"),
            rtp_port: 30000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
            session_id: 4242,
            session_version: 1,
        }
    }

    /// An offer from 192.0.2.10 with the given media sections appended.
    fn offer_with(sections: &str) -> Vec<u8> {
        format!(
            "v=0\r\no=peer 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n{sections}"
        )
        .into_bytes()
    }

    /// `(media, port, proto, formats)` of each line of an SDP we wrote.
    fn lines(body: &[u8]) -> Vec<(String, u16, String, Vec<String>)> {
        parse::parse(body)
            .expect("our own SDP parses")
            .media
            .into_iter()
            .map(|m| (m.media, m.port, m.proto, m.formats))
            .collect()
    }

    fn text(body: &[u8]) -> String {
        String::from_utf8(body.to_vec()).expect("utf-8")
    }

    #[test]
    fn codec_choice_follows_our_preference_on_the_offerers_numbers() {
        // (offer m-line and attributes, our codecs, expected codec, expected payload type)
        let table: &[(&str, &[Codec], Codec, u8)] = &[
            (
                "m=audio 4000 RTP/AVP 0\r\n",
                &[Codec::Pcmu, Codec::Pcma],
                Codec::Pcmu,
                0,
            ),
            (
                "m=audio 4000 RTP/AVP 8\r\n",
                &[Codec::Pcmu, Codec::Pcma],
                Codec::Pcma,
                8,
            ),
            (
                "m=audio 4000 RTP/AVP 8 0\r\n",
                &[Codec::Pcmu, Codec::Pcma],
                Codec::Pcmu,
                0,
            ),
            (
                "m=audio 4000 RTP/AVP 0 8\r\n",
                &[Codec::Pcma, Codec::Pcmu],
                Codec::Pcma,
                8,
            ),
            (
                "m=audio 4000 RTP/AVP 18 96\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 pcma/8000\r\n",
                &[Codec::Pcmu, Codec::Pcma],
                Codec::Pcma,
                96,
            ),
            (
                // An rtpmap renames even a static number (RFC 8866 §6.6).
                "m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMA/8000\r\n",
                &[Codec::Pcmu, Codec::Pcma],
                Codec::Pcma,
                0,
            ),
        ];
        for (section, codecs, codec, pt) in table {
            let mut l = local();
            l.codecs = codecs.to_vec();
            let a = answer(&offer_with(section), &l).expect(section);
            assert_eq!(
                (a.media.codec, a.media.payload_type),
                (*codec, *pt),
                "{section}"
            );
            assert_eq!(lines(&a.sdp)[0].3, [pt.to_string()], "{section}");
        }
    }

    #[test]
    fn offer_without_our_codecs_is_not_acceptable() {
        for section in [
            "m=audio 4000 RTP/AVP 18 9\r\n",
            "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n",
            "m=audio 4000 RTP/AVP 96\r\n",
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n",
            "m=audio 0 RTP/AVP 0\r\n",
            "m=video 4000 RTP/AVP 0\r\n",
        ] {
            assert_eq!(
                answer(&offer_with(section), &local()),
                Err(SdpError::NoAcceptableCodec),
                "{section}"
            );
        }
        let mut l = local();
        l.codecs.clear();
        assert_eq!(
            answer(&offer_with("m=audio 4000 RTP/AVP 0\r\n"), &l),
            Err(SdpError::NoAcceptableCodec)
        );
    }

    #[test]
    fn telephone_event_keeps_the_offerers_number_and_rate_8000() {
        let table: &[(&str, Option<u8>)] = &[
            (
                "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
                Some(101),
            ),
            (
                "m=audio 4000 RTP/AVP 0 100 97\r\na=rtpmap:100 telephone-event/16000\r\n\
                 a=rtpmap:97 TELEPHONE-EVENT/8000\r\n",
                Some(97),
            ),
            (
                "m=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/16000\r\n",
                None,
            ),
            // An rtpmap for a type not on the m= line names nothing.
            ("m=audio 4000 RTP/AVP 0\r\na=rtpmap:101 telephone-event/8000\r\n", None),
            ("m=audio 4000 RTP/AVP 0\r\n", None),
        ];
        for (section, want) in table {
            let a = answer(&offer_with(section), &local()).expect(section);
            assert_eq!(a.media.telephone_event_pt, *want, "{section}");
            let body = text(&a.sdp);
            match want {
                Some(pt) => {
                    assert!(
                        body.contains(&format!("a=rtpmap:{pt} telephone-event/8000\r\n")),
                        "{body}"
                    );
                    assert!(body.contains(&format!("a=fmtp:{pt} 0-15\r\n")), "{body}");
                }
                None => assert!(!body.contains("telephone-event"), "{body}"),
            }
        }
    }

    #[test]
    fn telephone_event_is_left_out_when_we_disable_it() {
        let mut l = local();
        l.telephone_event = false;
        let a = answer(
            &offer_with("m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
            &l,
        )
        .expect("answer");
        assert_eq!(a.media.telephone_event_pt, None);
        assert!(!text(&a.sdp).contains("telephone-event"));
    }

    #[test]
    fn unusable_lines_are_refused_with_port_zero_keeping_order_type_and_proto() {
        let offer = offer_with(
            "m=video 5000 RTP/AVP 31 96\r\na=rtpmap:96 H264/90000\r\n\
             m=image 6000 udptl t38\r\na=T38FaxVersion:0\r\n\
             m=audio 7000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abcd\r\n\
             m=audio 4000 RTP/AVP 8 0\r\n\
             m=audio 4002 RTP/AVP 0\r\n\
             m=message 9 TCP/MSRP *\r\n",
        );
        let a = answer(&offer, &local()).expect("answer");
        let got = lines(&a.sdp);
        let want: Vec<(String, u16, String, Vec<String>)> = [
            ("video", 0, "RTP/AVP", &["31", "96"][..]),
            ("image", 0, "udptl", &["t38"][..]),
            ("audio", 0, "RTP/SAVP", &["0"][..]),
            ("audio", 30000, "RTP/AVP", &["0", "101"][..][..1]),
            ("audio", 0, "RTP/AVP", &["0"][..]),
            ("message", 0, "TCP/MSRP", &["*"][..]),
        ]
        .iter()
        .map(|(m, p, pr, f)| {
            (
                m.to_string(),
                *p,
                pr.to_string(),
                f.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect();
        assert_eq!(got, want);
        assert_eq!(
            a.media.remote_addr,
            "192.0.2.10:4000".parse().expect("addr")
        );
        assert_eq!(a.media.codec, Codec::Pcmu);
    }

    #[test]
    fn direction_is_answered_per_rfc3264_and_hold_is_flagged() {
        // (session-level attrs, media-level attrs, c= address, our direction, on hold)
        let table: &[(&str, &str, &str, Direction, bool)] = &[
            ("", "", "192.0.2.10", Direction::SendRecv, false),
            (
                "",
                "a=sendrecv\r\n",
                "192.0.2.10",
                Direction::SendRecv,
                false,
            ),
            (
                "",
                "a=sendonly\r\n",
                "192.0.2.10",
                Direction::RecvOnly,
                true,
            ),
            (
                "",
                "a=recvonly\r\n",
                "192.0.2.10",
                Direction::SendOnly,
                false,
            ),
            (
                "",
                "a=inactive\r\n",
                "192.0.2.10",
                Direction::Inactive,
                true,
            ),
            (
                "a=sendonly\r\n",
                "",
                "192.0.2.10",
                Direction::RecvOnly,
                true,
            ),
            (
                "a=sendonly\r\n",
                "a=sendrecv\r\n",
                "192.0.2.10",
                Direction::SendRecv,
                false,
            ),
            ("", "", "0.0.0.0", Direction::SendRecv, true),
            (
                "",
                "a=foo\r\na=sendonly\r\na=bar:1\r\n",
                "192.0.2.10",
                Direction::RecvOnly,
                true,
            ),
            ("", "a=sendonly\r\n", "0.0.0.0", Direction::RecvOnly, true),
        ];
        for (session_attrs, media_attrs, conn, dir, hold) in table {
            let offer = format!(
                "v=0\r\no=peer 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 {conn}\r\nt=0 0\r\n\
                 {session_attrs}m=audio 4000 RTP/AVP 0\r\n{media_attrs}"
            );
            let a = answer(offer.as_bytes(), &local()).expect(&offer);
            assert_eq!(a.media.direction, *dir, "{offer}");
            assert_eq!(a.media.on_hold, *hold, "{offer}");
            assert!(
                text(&a.sdp).contains(&format!("a={}\r\n", dir.attribute())),
                "{offer}"
            );
        }
    }

    #[test]
    fn ptime_honours_the_offer_within_bounds_and_maxptime() {
        let table: &[(&str, u8)] = &[
            ("", 20),
            ("a=ptime:30\r\n", 30),
            ("a=ptime:10\r\n", 10),
            ("a=ptime:0\r\n", 20),
            ("a=ptime:5000\r\n", 20),
            ("a=ptime:abc\r\n", 20),
            ("a=ptime:40\r\na=maxptime:30\r\n", 30),
        ];
        for (attrs, want) in table {
            let a = answer(
                &offer_with(&format!("m=audio 4000 RTP/AVP 0\r\n{attrs}")),
                &local(),
            )
            .expect(attrs);
            assert_eq!(a.media.ptime_ms, *want, "{attrs}");
            assert!(text(&a.sdp).contains(&format!("a=ptime:{want}\r\n")));
        }
    }

    #[test]
    fn connection_problems_on_the_chosen_line_are_typed_errors() {
        let no_c =
            b"v=0\r\no=p 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            answer(no_c, &local()),
            Err(SdpError::MissingConnection { index: 0 })
        );
        let fqdn = offer_with(
            "m=video 0 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 pbx.example.com\r\n",
        );
        assert_eq!(
            answer(&fqdn, &local()),
            Err(SdpError::UnsupportedAddress {
                index: 1,
                address: "pbx.example.com".into()
            })
        );
        let v6 = b"v=0\r\no=p 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            answer(v6, &local()).map(|a| a.media.remote_addr),
            Ok("[2001:db8::1]:4000".parse().expect("addr"))
        );
    }

    #[test]
    fn malformed_offers_are_errors_not_panics() {
        for body in [
            &b""[..],
            b"v=0\r\n",
            b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",
            b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nx=unknown\r\n",
        ] {
            assert!(
                matches!(answer(body, &local()), Err(SdpError::Malformed { .. })),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn unknown_attributes_do_not_break_parsing() {
        let a = answer(
            &offer_with(
                "a=X-nat:0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4 192.0.2.10\r\n\
                 a=x-vendor-thing\r\na=ice-ufrag:abc\r\na=3gpp_sync_info:No Sync\r\n",
            ),
            &local(),
        );
        assert_eq!(a.map(|a| a.media.codec), Ok(Codec::Pcmu));
    }

    #[test]
    fn our_offer_answered_by_us_is_accepted_round_trip() {
        let ours = local();
        let body = offer(&ours);
        let peer = LocalMedia {
            addr: "198.51.100.20".parse().expect("ip"),
            rtp_port: 16384,
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            telephone_event: true,
            ptime_ms: 20,
            session_id: 9,
            session_version: 9,
        };
        let a = answer(&body, &peer).expect("peer answers our offer");
        assert_eq!(a.media.codec, Codec::Pcma);
        assert_eq!(a.media.telephone_event_pt, Some(OFFER_TELEPHONE_EVENT_PT));
        assert_eq!(
            a.media.remote_addr,
            "203.0.113.5:30000".parse().expect("addr")
        );
        let got = accept_answer(&ours, &a.sdp).expect("we accept the answer");
        assert_eq!(
            got,
            NegotiatedMedia {
                remote_addr: "198.51.100.20:16384".parse().expect("addr"),
                codec: Codec::Pcma,
                payload_type: 8,
                telephone_event_pt: Some(OFFER_TELEPHONE_EVENT_PT),
                ptime_ms: 20,
                direction: Direction::SendRecv,
                on_hold: false,
            }
        );
    }

    #[test]
    fn our_offer_lists_codecs_events_ptime_and_sendrecv() {
        let body = text(&offer(&local()));
        assert_eq!(
            body,
            "v=0\r\no=dialback 4242 1 IN IP4 203.0.113.5\r\ns=dialback\r\n\
             c=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn answers_to_our_offer_that_refuse_or_change_it_are_errors() {
        let ours = local();
        let head =
            "v=0\r\no=p 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n";
        let table: &[(&str, SdpError)] = &[
            ("m=audio 0 RTP/AVP 0\r\n", SdpError::MediaRejected),
            ("m=audio 5000 RTP/AVP 18\r\n", SdpError::NoAcceptableCodec),
            (
                "m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n",
                SdpError::MediaCountMismatch {
                    offered: 1,
                    answered: 2,
                },
            ),
            (
                "m=image 5000 udptl t38\r\n",
                SdpError::MediaMismatch {
                    media: "image".into(),
                    proto: "udptl".into(),
                },
            ),
        ];
        for (section, err) in table {
            assert_eq!(
                accept_answer(&ours, format!("{head}{section}").as_bytes()),
                Err(err.clone()),
                "{section}"
            );
        }
        let mut pcma_only = ours.clone();
        pcma_only.codecs = vec![Codec::Pcma];
        assert_eq!(
            accept_answer(
                &pcma_only,
                format!("{head}m=audio 5000 RTP/AVP 0\r\n").as_bytes()
            ),
            Err(SdpError::NoAcceptableCodec)
        );
    }

    #[test]
    fn answer_to_our_offer_takes_the_answerers_first_offered_codec() {
        let head =
            "v=0\r\no=p 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n";
        let got = accept_answer(
            &local(),
            format!("{head}m=audio 5000 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\na=recvonly\r\n")
                .as_bytes(),
        )
        .expect("accepted");
        assert_eq!((got.codec, got.payload_type), (Codec::Pcma, 8));
        assert_eq!(got.telephone_event_pt, Some(101));
        assert_eq!(got.ptime_ms, 30);
        assert_eq!(got.direction, Direction::SendOnly);
        assert!(!got.on_hold);
    }

    // Real-world offers, modelled on what these peers send (addresses from RFC 5737).

    #[test]
    fn asterisk_offer_is_answered_with_pcmu_and_event_101() {
        let offer = b"v=0\r\n\
o=- 1868463217 1868463217 IN IP4 192.0.2.50\r\n\
s=Asterisk\r\n\
c=IN IP4 192.0.2.50\r\n\
t=0 0\r\n\
m=audio 12552 RTP/AVP 0 8 3 111 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:3 GSM/8000\r\n\
a=rtpmap:111 G726-32/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:150\r\n\
a=sendrecv\r\n";
        let a = answer(offer, &local()).expect("answer");
        assert_eq!(a.media.codec, Codec::Pcmu);
        assert_eq!(a.media.telephone_event_pt, Some(101));
        assert_eq!(
            a.media.remote_addr,
            "192.0.2.50:12552".parse().expect("addr")
        );
        assert_eq!(lines(&a.sdp).len(), 1);
    }

    #[test]
    fn freeswitch_offer_with_wideband_first_is_answered_with_g711() {
        let offer = b"v=0\r\n\
o=FreeSWITCH 1700000000 1700000001 IN IP4 192.0.2.60\r\n\
s=FreeSWITCH\r\n\
c=IN IP4 192.0.2.60\r\n\
t=0 0\r\n\
m=audio 27364 RTP/AVP 102 9 0 8 103 101\r\n\
a=rtpmap:102 opus/48000/2\r\n\
a=fmtp:102 useinbandfec=1; maxplaybackrate=16000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:103 telephone-event/48000\r\n\
a=fmtp:103 0-16\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=rtcp:27365 IN IP4 192.0.2.60\r\n";
        let mut l = local();
        l.codecs = vec![Codec::Pcma, Codec::Pcmu];
        let a = answer(offer, &l).expect("answer");
        assert_eq!((a.media.codec, a.media.payload_type), (Codec::Pcma, 8));
        assert_eq!(a.media.telephone_event_pt, Some(101));
    }

    #[test]
    fn baresip_offer_with_ice_and_video_is_answered_on_audio_only() {
        let offer = b"v=0\r\n\
o=- 2890844526 2890844527 IN IP4 192.0.2.70\r\n\
s=-\r\n\
c=IN IP4 192.0.2.70\r\n\
t=0 0\r\n\
a=tool:baresip 3.10.1\r\n\
m=audio 10618 RTP/AVP 96 0 8 101\r\n\
b=AS:64\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:2938721 cname:e2f1b4c6-8f7d\r\n\
a=mid:0\r\n\
m=video 10620 RTP/AVP 97\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 packetization-mode=0\r\n\
a=sendrecv\r\n";
        let a = answer(offer, &local()).expect("answer");
        assert_eq!(a.media.codec, Codec::Pcmu);
        let got = lines(&a.sdp);
        assert_eq!(got.len(), 2);
        assert_eq!((got[1].0.as_str(), got[1].1), ("video", 0));
    }

    #[test]
    fn carrier_gateway_offer_with_amr_wb_first_is_answered_with_pcmu() {
        // IMS / VoLTE interconnect style: AMR-WB and AMR first, events at both rates, a
        // session-level bandwidth and 3GPP attributes.
        let offer = b"v=0\r\n\
o=SBC 51762 51762 IN IP4 192.0.2.80\r\n\
s=SBC call\r\n\
c=IN IP4 192.0.2.80\r\n\
b=AS:80\r\n\
t=0 0\r\n\
m=audio 40210 RTP/AVP 104 102 0 8 105 100\r\n\
b=AS:41\r\n\
b=RS:600\r\n\
b=RR:2000\r\n\
a=rtpmap:104 AMR-WB/16000/1\r\n\
a=fmtp:104 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:102 AMR/8000/1\r\n\
a=fmtp:102 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:105 telephone-event/16000\r\n\
a=fmtp:105 0-15\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=fmtp:100 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:240\r\n\
a=sendrecv\r\n";
        let a = answer(offer, &local()).expect("answer");
        assert_eq!((a.media.codec, a.media.payload_type), (Codec::Pcmu, 0));
        assert_eq!(a.media.telephone_event_pt, Some(100));
        assert_eq!(a.media.ptime_ms, 20);
        assert_eq!(
            a.media.remote_addr,
            "192.0.2.80:40210".parse().expect("addr")
        );
    }

    #[test]
    fn t38_reinvite_from_a_fax_gateway_is_not_acceptable() {
        let offer = b"v=0\r\n\
o=- 1 2 IN IP4 192.0.2.90\r\n\
s=-\r\n\
c=IN IP4 192.0.2.90\r\n\
t=0 0\r\n\
m=image 4402 udptl t38\r\n\
a=T38FaxVersion:0\r\n\
a=T38MaxBitRate:14400\r\n\
a=T38FaxRateManagement:transferredTCF\r\n\
a=T38FaxMaxDatagram:400\r\n\
a=T38FaxUdpEC:t38UDPRedundancy\r\n";
        assert_eq!(answer(offer, &local()), Err(SdpError::NoAcceptableCodec));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn section() -> impl Strategy<Value = String> {
            prop_oneof![
                (
                    0u16..3,
                    prop::sample::select(vec!["0", "8", "0 8", "8 0 101", "18", "96"])
                )
                    .prop_map(|(p, f)| format!(
                        "m=audio {} RTP/AVP {f}\r\na=rtpmap:101 telephone-event/8000\r\n",
                        p * 2000
                    )),
                Just("m=video 5000 RTP/AVP 31\r\n".to_owned()),
                Just("m=image 6000 udptl t38\r\n".to_owned()),
                Just("m=audio 7000 RTP/SAVP 0\r\n".to_owned()),
                Just("m=text 0 RTP/AVP 98\r\n".to_owned()),
                Just("m=application 9 UDP/BFCP *\r\n".to_owned()),
                prop::sample::select(vec!["a=sendonly", "a=inactive", "a=foo:bar", "a=ptime:30"])
                    .prop_map(|a| format!("m=audio 4000 RTP/AVP 0\r\n{a}\r\n")),
            ]
        }

        proptest! {
            #[test]
            fn answer_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..600)) {
                let _ = answer(&body, &local());
                let _ = accept_answer(&local(), &body);
            }

            #[test]
            fn answer_never_panics_on_mutated_offers(
                sections in prop::collection::vec(section(), 1..6),
                cut in 0usize..2000,
                flip in any::<u8>(),
            ) {
                let mut body = offer_with(&sections.concat());
                let i = cut % body.len();
                body[i] ^= flip;
                let _ = answer(&body, &local());
            }

            #[test]
            fn every_answer_has_one_line_per_offered_line(
                sections in prop::collection::vec(section(), 1..8),
            ) {
                let body = offer_with(&sections.concat());
                let offered = parse::parse(&body).expect("generated offers parse").media;
                match answer(&body, &local()) {
                    Ok(a) => {
                        let got = lines(&a.sdp);
                        prop_assert_eq!(got.len(), offered.len());
                        for (g, o) in got.iter().zip(&offered) {
                            prop_assert_eq!(&g.0, &o.media);
                            prop_assert_eq!(&g.2, &o.proto);
                        }
                        prop_assert_eq!(got.iter().filter(|g| g.1 != 0).count(), 1);
                    }
                    Err(e) => prop_assert_eq!(e, SdpError::NoAcceptableCodec),
                }
            }
        }
    }
}
