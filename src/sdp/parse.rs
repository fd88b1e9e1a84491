//! Bytes to our own read-only view of a session description, via the `sdp` crate.
//!
//! The crate checks RFC 8866 §9 line order and field syntax but accepts only the media types
//! and transport tokens WebRTC uses. An `m=` line naming anything else (`TCP/MSRP`, `UDPTL`,
//! `m=data`) is still a valid line we must answer with port 0 (RFC 3264 §6), so before handing
//! the text to the crate we rewrite such a line to a neutral `m=application <port> UDP <fmt>`
//! form and keep its original media and proto tokens here. Nothing from the crate escapes.

use std::io::Cursor;
use std::net::IpAddr;

use sdp::description::common::{Attribute, ConnectionInformation};
use sdp::description::session::SessionDescription;

use super::{Direction, SdpError, MAX_MEDIA_LINES, MAX_SDP_LEN};

/// Media types the crate accepts in `m=` (its lexer's list).
const CRATE_MEDIA: &[&str] = &["audio", "video", "text", "application", "message", "image"];

/// Transport tokens the crate accepts in `m=`, joined by `/`.
const CRATE_PROTO_TOKENS: &[&str] = &[
    "UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "udptl",
];

/// A parsed session description: only what negotiation reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedSdp {
    pub media: Vec<ParsedMedia>,
}

/// One `m=` section with session-level defaults already applied (RFC 8866 §5: media-level
/// `c=` and direction attributes override session-level ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedMedia {
    /// Media type as written (`audio`, `video`, `image`, ...).
    pub media: String,
    /// Transport port; 0 means the stream is disabled (RFC 3264 §5.1).
    pub port: u16,
    /// Transport protocol as written (`RTP/AVP`, `udptl`, ...).
    pub proto: String,
    /// Format list as written: payload type numbers for RTP.
    pub formats: Vec<String>,
    /// Effective connection address, if any `c=` applies.
    pub connection: Option<ConnAddr>,
    /// Effective direction (sendrecv when none is stated, RFC 8866 §6.7).
    pub direction: Direction,
    /// `a=rtpmap` entries in order.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=ptime` in ms (media level, else session level).
    pub ptime_ms: Option<u32>,
    /// `a=maxptime` in ms (media level, else session level).
    pub maxptime_ms: Option<u32>,
}

/// A connection address (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnAddr {
    /// A unicast or multicast IP literal (TTL / count suffixes stripped).
    Ip(IpAddr),
    /// Anything else, e.g. an FQDN.
    Name(String),
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RtpMap {
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    pub channels: u16,
}

/// Parses an SDP body. Never panics: every failure is an [`SdpError`].
pub(crate) fn parse(body: &[u8]) -> Result<ParsedSdp, SdpError> {
    if body.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_SDP_LEN,
        });
    }
    let text = std::str::from_utf8(body).map_err(|e| SdpError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let (neutral, originals) = neutralize_media_lines(text)?;
    let desc =
        SessionDescription::unmarshal(&mut Cursor::new(neutral.as_bytes())).map_err(|e| {
            SdpError::Malformed {
                reason: e.to_string(),
            }
        })?;
    if desc.media_descriptions.len() != originals.len() {
        // Our line scan and the crate's lexer disagree on where m= lines are; refuse rather
        // than answer the wrong lines.
        return Err(SdpError::Malformed {
            reason: format!(
                "found {} m= lines but parsed {}",
                originals.len(),
                desc.media_descriptions.len()
            ),
        });
    }

    let session_conn = desc.connection_information.as_ref().and_then(conn_addr);
    let session_direction = direction_of(&desc.attributes);
    let session_ptime = uint_attribute(&desc.attributes, "ptime");
    let session_maxptime = uint_attribute(&desc.attributes, "maxptime");

    let mut media = Vec::with_capacity(originals.len());
    for (md, (kind, proto)) in desc.media_descriptions.iter().zip(originals) {
        let port = u16::try_from(md.media_name.port.value).map_err(|_| SdpError::Malformed {
            reason: format!("m= port {} out of range", md.media_name.port.value),
        })?;
        media.push(ParsedMedia {
            media: kind,
            port,
            proto,
            formats: md.media_name.formats.clone(),
            connection: md
                .connection_information
                .as_ref()
                .and_then(conn_addr)
                .or_else(|| session_conn.clone()),
            direction: direction_of(&md.attributes)
                .or(session_direction)
                .unwrap_or(Direction::SendRecv),
            rtpmaps: md
                .attributes
                .iter()
                .filter(|a| a.key == "rtpmap")
                .filter_map(|a| a.value.as_deref().and_then(rtpmap))
                .collect(),
            ptime_ms: uint_attribute(&md.attributes, "ptime").or(session_ptime),
            maxptime_ms: uint_attribute(&md.attributes, "maxptime").or(session_maxptime),
        });
    }
    Ok(ParsedSdp { media })
}

/// Rewrites `m=` lines the crate would refuse for their media or proto token, and returns the
/// original `(media, proto)` of every `m=` line in order. Lines with fewer than three fields are
/// left for the crate to reject.
fn neutralize_media_lines(text: &str) -> Result<(String, Vec<(String, String)>), SdpError> {
    let mut out = String::with_capacity(text.len());
    let mut originals = Vec::new();
    for line in text.split_inclusive('\n') {
        // The crate skips CR and LF before a type letter, so a line is an m= line exactly when
        // it starts with "m=" after those.
        let start = line.trim_start_matches(['\r', '\n']);
        let Some(value) = start.strip_prefix("m=") else {
            out.push_str(line);
            continue;
        };
        let fields: Vec<&str> = value.split_whitespace().collect();
        let (kind, port, proto) = match fields.as_slice() {
            [kind, port, proto, ..] => (*kind, *port, *proto),
            _ => {
                out.push_str(line);
                originals.push((String::new(), String::new()));
                continue;
            }
        };
        originals.push((kind.to_owned(), proto.to_owned()));
        let crate_accepts = CRATE_MEDIA.contains(&kind)
            && proto.split('/').all(|t| CRATE_PROTO_TOKENS.contains(&t));
        if crate_accepts {
            out.push_str(line);
        } else {
            out.push_str("m=application ");
            out.push_str(port);
            out.push_str(" UDP");
            for f in fields.iter().skip(3) {
                out.push(' ');
                out.push_str(f);
            }
            out.push_str("\r\n");
        }
    }
    if originals.len() > MAX_MEDIA_LINES {
        return Err(SdpError::TooManyMediaLines {
            count: originals.len(),
            max: MAX_MEDIA_LINES,
        });
    }
    Ok((out, originals))
}

fn conn_addr(ci: &ConnectionInformation) -> Option<ConnAddr> {
    let raw = ci.address.as_ref()?.address.as_str();
    // RFC 8866 §5.7: multicast IPv4 carries "/ttl[/count]", IPv6 "/count".
    let host = raw.split('/').next().unwrap_or(raw);
    Some(match host.parse::<IpAddr>() {
        Ok(ip) => ConnAddr::Ip(ip),
        Err(_) => ConnAddr::Name(host.to_owned()),
    })
}

/// The last direction attribute wins if a peer writes more than one; RFC 8866 §6.7 allows
/// one, and we must not fail on a sloppy peer.
fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs
        .iter()
        .rev()
        .find_map(|a| Direction::from_attribute(&a.key))
}

fn uint_attribute(attrs: &[Attribute], key: &str) -> Option<u32> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
        .and_then(|v| v.trim().parse::<u32>().ok())
}

/// Parses an `a=rtpmap` value; `None` for anything malformed (it then names nothing).
fn rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
    let payload_type = pt.parse::<u8>().ok()?;
    let mut parts = encoding.trim().split('/');
    let encoding_name = parts.next()?.to_owned();
    let clock_rate = parts.next()?.parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => c.parse::<u16>().ok()?,
        None => 1,
    };
    if parts.next().is_some() || encoding_name.is_empty() {
        return None;
    }
    Some(RtpMap {
        payload_type,
        encoding_name,
        clock_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtpmap_reads_name_rate_and_optional_channels() {
        assert_eq!(
            rtpmap("96 opus/48000/2"),
            Some(RtpMap {
                payload_type: 96,
                encoding_name: "opus".into(),
                clock_rate: 48000,
                channels: 2
            })
        );
        assert_eq!(rtpmap("0 PCMU/8000").map(|r| r.channels), Some(1));
        assert_eq!(rtpmap("300 PCMU/8000"), None);
        assert_eq!(rtpmap("0 PCMU"), None);
        assert_eq!(rtpmap("0 PCMU/8000/1/9"), None);
        assert_eq!(rtpmap(""), None);
    }

    #[test]
    fn media_lines_the_crate_refuses_are_kept_with_their_original_tokens() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    m=message 9 TCP/MSRP *\r\nm=image 5000 UDPTL t38\r\n\
                    m=audio 4000 RTP/AVP 0\r\n";
        let p = parse(body.as_bytes()).expect("parses");
        let kinds: Vec<(&str, &str)> = p
            .media
            .iter()
            .map(|m| (m.media.as_str(), m.proto.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("message", "TCP/MSRP"),
                ("image", "UDPTL"),
                ("audio", "RTP/AVP")
            ]
        );
        assert_eq!(p.media[1].formats, ["t38"]);
    }

    #[test]
    fn media_level_connection_and_direction_override_session_level() {
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                    a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n\
                    a=inactive\r\nm=audio 4002 RTP/AVP 0\r\n";
        let p = parse(body.as_bytes()).expect("parses");
        assert_eq!(
            p.media[0].connection,
            Some(ConnAddr::Ip("198.51.100.7".parse().expect("ip")))
        );
        assert_eq!(p.media[0].direction, Direction::Inactive);
        assert_eq!(
            p.media[1].connection,
            Some(ConnAddr::Ip("192.0.2.1".parse().expect("ip")))
        );
        assert_eq!(p.media[1].direction, Direction::SendOnly);
    }

    #[test]
    fn oversized_and_non_utf8_bodies_are_refused_before_parsing() {
        let big = vec![b'a'; MAX_SDP_LEN + 1];
        assert!(matches!(parse(&big), Err(SdpError::TooLarge { .. })));
        assert_eq!(
            parse(b"v=0\r\n\xff"),
            Err(SdpError::NotUtf8 { valid_up_to: 5 })
        );
    }

    #[test]
    fn too_many_media_lines_are_refused() {
        let mut body = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n");
        for _ in 0..=MAX_MEDIA_LINES {
            body.push_str("m=video 0 RTP/AVP 31\r\n");
        }
        assert!(matches!(
            parse(body.as_bytes()),
            Err(SdpError::TooManyMediaLines { .. })
        ));
    }
}
