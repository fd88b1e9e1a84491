//! Building outgoing SIP messages: responses to a received request (RFC 3261 §8.2.6) and
//! requests we originate (§8.1.1). Output is wire bytes; header order follows common practice
//! (Via first) so captures read naturally.

use std::fmt::Write as _;

use crate::sip::message::{Message, Method, StartLine};
use crate::sip::validate::parse_cseq;

/// Extra header fields and an optional body for a message being built.
#[derive(Clone, Debug, Default)]
pub struct Extras<'a> {
    pub headers: Vec<(&'a str, String)>,
    /// `(content type, body)`.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Build a response to `req` (RFC 3261 §8.2.6.2): Via, From, Call-ID and CSeq copied, To
/// copied with `to_tag` added when the request's To has none and the code is above 100.
pub fn response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    server: &str,
    extras: &Extras<'_>,
) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for v in req.headers("via") {
        let _ = write!(out, "Via: {v}\r\n");
    }
    if let Some(v) = req.header("from") {
        let _ = write!(out, "From: {v}\r\n");
    }
    if let Some(v) = req.header("to") {
        let has_tag = v
            .rsplit_once('>')
            .map(|(_, p)| p)
            .unwrap_or(v)
            .split(';')
            .skip(1)
            .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="));
        match to_tag {
            Some(tag) if !has_tag && code > 100 => {
                let _ = write!(out, "To: {v};tag={tag}\r\n");
            }
            _ => {
                let _ = write!(out, "To: {v}\r\n");
            }
        }
    }
    if let Some(v) = req.header("call-id") {
        let _ = write!(out, "Call-ID: {v}\r\n");
    }
    if let Some(v) = req.header("cseq") {
        let _ = write!(out, "CSeq: {v}\r\n");
    }
    finish(out, server, "Server", extras)
}

/// Fields of a request we originate.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a Method,
    pub uri: &'a str,
    /// Our Via `sent-by` (host:port) and transport token (`UDP`, `TCP`).
    pub via_sent_by: &'a str,
    pub transport: &'a str,
    pub branch: &'a str,
    pub from: &'a str,
    pub from_tag: &'a str,
    pub to: &'a str,
    pub to_tag: Option<&'a str>,
    pub call_id: &'a str,
    pub cseq: u32,
    pub max_forwards: u8,
}

/// Build a request (RFC 3261 §8.1.1). `from`/`to` are URIs, enclosed in angle brackets here.
pub fn request(p: &RequestParts<'_>, user_agent: &str, extras: &Extras<'_>) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let m = p.method.as_str();
    let _ = write!(out, "{m} {} SIP/2.0\r\n", p.uri);
    let _ = write!(
        out,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        p.transport, p.via_sent_by, p.branch
    );
    let _ = write!(out, "Max-Forwards: {}\r\n", p.max_forwards);
    let _ = write!(out, "From: <{}>;tag={}\r\n", p.from, p.from_tag);
    match p.to_tag {
        Some(t) => {
            let _ = write!(out, "To: <{}>;tag={t}\r\n", p.to);
        }
        None => {
            let _ = write!(out, "To: <{}>\r\n", p.to);
        }
    }
    let _ = write!(out, "Call-ID: {}\r\n", p.call_id);
    let _ = write!(out, "CSeq: {} {m}\r\n", p.cseq);
    finish(out, user_agent, "User-Agent", extras)
}

/// Build a request that reuses the transaction of `orig`, one of our requests (RFC 3261
/// §17.1.1.3 ACK for a non-2xx, §9.1 CANCEL): the same top Via (branch), Request-URI, Call-ID,
/// From and CSeq number, `method` in CSeq, `to` as the To value, and the same Route headers.
/// `None` if `orig` is not a request carrying those headers.
pub fn same_transaction_request(
    orig: &Message,
    method: &Method,
    to: &str,
    user_agent: &str,
) -> Option<Vec<u8>> {
    let StartLine::Request { uri, .. } = &orig.start else {
        return None;
    };
    let via = orig.header("via")?;
    let from = orig.header("from")?;
    let call_id = orig.header("call-id")?;
    let (cseq, _) = parse_cseq(orig.header("cseq")?)?;
    let m = method.as_str();
    let mut out = String::with_capacity(512);
    let _ = write!(out, "{m} {uri} SIP/2.0\r\n");
    let _ = write!(out, "Via: {via}\r\n");
    let _ = write!(out, "Max-Forwards: 70\r\n");
    let _ = write!(out, "From: {from}\r\n");
    let _ = write!(out, "To: {to}\r\n");
    let _ = write!(out, "Call-ID: {call_id}\r\n");
    let _ = write!(out, "CSeq: {cseq} {m}\r\n");
    for r in orig.headers("route") {
        let _ = write!(out, "Route: {r}\r\n");
    }
    Some(finish(out, user_agent, "User-Agent", &Extras::default()))
}

fn finish(mut out: String, agent: &str, agent_header: &str, extras: &Extras<'_>) -> Vec<u8> {
    for (k, v) in &extras.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let _ = write!(out, "{agent_header}: {agent}\r\n");
    let mut bytes = match extras.body {
        Some((ct, body)) => {
            let _ = write!(
                out,
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut b = out.into_bytes();
            b.extend_from_slice(body);
            b
        }
        None => {
            out.push_str("Content-Length: 0\r\n\r\n");
            out.into_bytes()
        }
    };
    bytes.shrink_to_fit();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, Limits};

    #[test]
    fn response_copies_dialog_headers_and_adds_to_tag() {
        let req = parse_datagram(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP g\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 5 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            &Limits::default(),
        )
        .expect("frames");
        let bytes = response(
            &req,
            200,
            "OK",
            Some("t9"),
            "dialback/0",
            &Extras::default(),
        );
        let resp = parse_datagram(&bytes, &Limits::default()).expect("frames");
        assert_eq!(resp.status(), Some(200));
        assert_eq!(resp.count("via"), 2);
        assert_eq!(resp.header("to"), Some("<sip:a@b>;tag=t9"));
        assert_eq!(resp.header("cseq"), Some("5 OPTIONS"));
        assert_eq!(resp.header("server"), Some("dialback/0"));
    }

    #[test]
    fn request_round_trips_through_the_parser() {
        let parts = RequestParts {
            method: &Method::Register,
            uri: "sip:127.0.0.1:5060",
            via_sent_by: "127.0.0.1:5070",
            transport: "UDP",
            branch: "z9hG4bKabc",
            from: "sip:u@127.0.0.1",
            from_tag: "f1",
            to: "sip:u@127.0.0.1",
            to_tag: None,
            call_id: "cid",
            cseq: 7,
            max_forwards: 70,
        };
        let extras = Extras {
            headers: vec![("Expires", "60".into())],
            body: None,
        };
        let bytes = request(&parts, "dialback/0", &extras);
        let m = parse_datagram(&bytes, &Limits::default()).expect("frames");
        let info = crate::sip::validate::validate_request(&m).expect("valid");
        assert_eq!(info.cseq, 7);
        assert_eq!(info.branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(m.header("expires"), Some("60"));
    }
}
