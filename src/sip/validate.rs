//! Request validation: the checks a UAS makes before acting on a request (RFC 3261 §8.2) and
//! the header grammar those checks need (Via §20.42, CSeq §20.16, From/To §20.20/§20.39).
//!
//! A failed check is a [`Reject`]: the status code and reason the endpoint answers with. The
//! order of checks follows RFC 3261 §8.2: framing and syntax first (400/505), then the
//! Request-URI scheme (416), then extensions (420), then content (415/406, in
//! [`check_content`]).

use crate::sip::message::{is_token, Message, Method, StartLine};

/// Why a request is refused, as the response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub code: u16,
    pub reason: &'static str,
    /// Extra header lines for the response (`Unsupported`, `Accept`, ...).
    pub extra: Vec<(&'static str, String)>,
}

impl Reject {
    fn new(code: u16, reason: &'static str) -> Self {
        Reject {
            code,
            reason,
            extra: Vec::new(),
        }
    }
}

/// The identifying fields of a request that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: Method,
    pub uri: String,
    pub call_id: String,
    pub cseq: u32,
    /// Branch of the top Via, if any.
    pub branch: Option<String>,
    /// `sent-by` of the top Via.
    pub sent_by: String,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
}

/// Headers that may appear at most once (RFC 3261 §7.3.1: only comma-list headers repeat).
const SINGLE: &[&str] = &[
    "from",
    "to",
    "call-id",
    "cseq",
    "max-forwards",
    "content-type",
];

/// Validate a framed request. Responses are not validated here.
pub fn validate_request(msg: &Message) -> Result<RequestInfo, Reject> {
    let StartLine::Request { method, uri, .. } = &msg.start else {
        return Err(Reject::new(400, "Not A Request"));
    };
    if let Some(d) = &msg.defect {
        return Err(match d.status() {
            505 => Reject::new(505, "Version Not Supported"),
            _ => Reject::new(400, "Bad Request"),
        });
    }
    for name in ["via", "from", "to", "call-id", "cseq"] {
        if msg.count(name) == 0 {
            return Err(Reject::new(400, "Missing Mandatory Header"));
        }
    }
    if SINGLE.iter().any(|n| msg.count(n) > 1) {
        return Err(Reject::new(400, "Repeated Single-Value Header"));
    }
    let mut sent_by = String::new();
    let mut branch = None;
    for (i, v) in msg.headers("via").enumerate() {
        for (j, one) in split_list(v).into_iter().enumerate() {
            let via = parse_via(one).ok_or(Reject::new(400, "Bad Via"))?;
            if i == 0 && j == 0 {
                sent_by = via.sent_by;
                branch = via.branch;
            }
        }
    }
    let cseq = msg.header("cseq").unwrap_or("");
    let (num, cseq_method) = parse_cseq(cseq).ok_or(Reject::new(400, "Bad CSeq"))?;
    // RFC 3261 §8.1.1.5: the CSeq method matches the request method (RFC 4475 §3.1.2.18).
    if cseq_method != method.as_str() {
        return Err(Reject::new(400, "CSeq Method Mismatch"));
    }
    if let Some(mf) = msg.header("max-forwards") {
        if mf.is_empty() || mf.len() > 10 || !mf.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reject::new(400, "Bad Max-Forwards"));
        }
    }
    let from =
        parse_name_addr(msg.header("from").unwrap_or("")).ok_or(Reject::new(400, "Bad From"))?;
    let to = parse_name_addr(msg.header("to").unwrap_or("")).ok_or(Reject::new(400, "Bad To"))?;
    let call_id = msg.header("call-id").unwrap_or("").to_string();
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(Reject::new(400, "Bad Call-ID"));
    }
    check_request_uri(uri)?;
    if !matches!(method, Method::Ack | Method::Cancel) {
        let unknown: Vec<&str> = msg
            .headers("require")
            .flat_map(split_list)
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect();
        if !unknown.is_empty() {
            // RFC 3261 §8.2.2.3: we support no extension that a request may require.
            let mut r = Reject::new(420, "Bad Extension");
            r.extra.push(("Unsupported", unknown.join(", ")));
            return Err(r);
        }
    }
    Ok(RequestInfo {
        method: method.clone(),
        uri: uri.clone(),
        call_id,
        cseq: num,
        branch,
        sent_by,
        from_tag: from.tag,
        to_tag: to.tag,
    })
}

/// RFC 3261 §8.2.3 / §21.4.7 / §21.4.13: the body types a method may carry here, and the
/// Accept header for what we would send back.
pub fn check_content(msg: &Message, method: &Method, accepted: &[&str]) -> Result<(), Reject> {
    if !msg.body.is_empty() && !accepted.is_empty() {
        let ct = msg
            .header("content-type")
            .map(media_type)
            .unwrap_or_default();
        if !accepted.iter().any(|a| a.eq_ignore_ascii_case(&ct)) {
            let mut r = Reject::new(415, "Unsupported Media Type");
            r.extra.push(("Accept", accepted.join(", ")));
            return Err(r);
        }
    }
    if *method == Method::Invite {
        // Our answer to an INVITE carries SDP: the caller must accept it.
        let accepts: Vec<String> = msg
            .headers("accept")
            .flat_map(split_list)
            .map(media_type)
            .filter(|t| !t.is_empty())
            .collect();
        if !accepts.is_empty()
            && !accepts
                .iter()
                .any(|t| t == "application/sdp" || t == "application/*" || t == "*/*")
        {
            return Err(Reject::new(406, "Not Acceptable"));
        }
    }
    Ok(())
}

/// `type/subtype` of a Content-Type or Accept value, lower-cased, parameters dropped.
pub fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parsed Via value (one entry of the comma list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub sent_by: String,
    pub branch: Option<String>,
    pub rport: bool,
    pub received: Option<String>,
}

/// Parse one Via entry: `SIP/2.0/transport sent-by *(;param)` (RFC 3261 §20.42), with the
/// linear whitespace the grammar allows around `/`, `:`, `;` and `=` (RFC 4475 §3.1.1.1).
pub fn parse_via(v: &str) -> Option<Via> {
    let (proto, rest) = via_protocol(v)?;
    let (name, ver, transport) = proto;
    if !name.eq_ignore_ascii_case("SIP") || !is_token(ver) || !is_token(transport) {
        return None;
    }
    let mut parts = rest.split(';');
    let sent_by: String = parts
        .next()?
        .split(':')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(":");
    if sent_by.is_empty() || sent_by.contains([' ', '\t', ',']) {
        return None;
    }
    let mut via = Via {
        transport: transport.to_ascii_uppercase(),
        sent_by,
        branch: None,
        rport: false,
        received: None,
    };
    for p in parts {
        let p = p.trim();
        let (k, val) = match p.split_once('=') {
            Some((k, val)) => (k.trim(), Some(val.trim())),
            None => (p, None),
        };
        if !is_token(k) || val.is_some_and(|x| x.is_empty()) {
            return None;
        }
        match k.to_ascii_lowercase().as_str() {
            "branch" => via.branch = val.map(str::to_string),
            "rport" => via.rport = true,
            "received" => via.received = val.map(str::to_string),
            _ => {}
        }
    }
    Some(via)
}

/// Split `name / version / transport LWS rest`.
fn via_protocol(v: &str) -> Option<((&str, &str, &str), &str)> {
    let (name, rest) = v.trim_start().split_once('/')?;
    let (ver, rest) = rest.split_once('/')?;
    let rest = rest.trim_start();
    let end = rest.find([' ', '\t'])?;
    let transport = rest.get(..end)?;
    let after = rest.get(end..)?.trim();
    Some(((name.trim(), ver.trim(), transport), after))
}

/// Parse `CSeq: number method`; the number must be below 2^31 (RFC 3261 §8.1.1.5).
pub fn parse_cseq(v: &str) -> Option<(u32, &str)> {
    let mut it = v.split_whitespace();
    let n = it.next()?;
    let m = it.next()?;
    if it.next().is_some() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) || !is_token(m)
    {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    if n >= 1 << 31 {
        return None;
    }
    Some((n as u32, m))
}

/// A From/To/Contact-style value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: String,
    pub tag: Option<String>,
}

/// Parse `name-addr / addr-spec *(;param)` (RFC 3261 §20.10). Quotes and angle brackets
/// must balance; a bare addr-spec takes no URI parameters (they are header parameters).
pub fn parse_name_addr(v: &str) -> Option<NameAddr> {
    let v = v.trim();
    let mut display = None;
    let (uri, params) = if let Some(rest) = v.strip_prefix('"') {
        let end = quoted_end(rest)?;
        display = Some(rest.get(..end)?.to_string());
        let after = rest.get(end + 1..)?.trim_start();
        let inner = after.strip_prefix('<')?;
        let close = inner.find('>')?;
        (inner.get(..close)?.trim(), inner.get(close + 1..)?)
    } else if let Some(open) = v.find('<') {
        let name = v.get(..open)?.trim();
        if !name.is_empty() {
            display = Some(name.to_string());
        }
        let inner = v.get(open + 1..)?;
        let close = inner.find('>')?;
        (inner.get(..close)?.trim(), inner.get(close + 1..)?)
    } else {
        match v.find(';') {
            Some(i) => (v.get(..i)?, v.get(i..)?),
            None => (v, ""),
        }
    };
    if uri.is_empty() || uri.contains(['<', '>', '"']) || !uri.contains(':') {
        return None;
    }
    let mut tag = None;
    for p in params.split(';').skip(1) {
        let p = p.trim();
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("tag") {
            tag = Some(val.trim().to_string());
        }
    }
    let rest = params.trim();
    if !rest.is_empty() && !rest.starts_with(';') {
        return None;
    }
    Some(NameAddr {
        display,
        uri: uri.trim().to_string(),
        tag,
    })
}

/// Index of the closing quote of a quoted-string body (after the opening quote), honouring
/// `quoted-pair` escapes (RFC 3261 §25.1).
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Split a comma-separated header list, not splitting inside quotes or angle brackets.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut angle, mut esc) = (0, false, false, false);
    for (i, c) in v.char_indices() {
        if esc {
            esc = false;
            continue;
        }
        match c {
            '\\' if quoted => esc = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(v.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v.get(start..).unwrap_or("").trim());
    out
}

/// RFC 3261 §19.1 / §21.4.16: we handle sip, sips and tel Request-URIs; a SIP URI in a
/// Request-URI cannot carry headers (§19.1.5) or be enclosed in angle brackets.
fn check_request_uri(uri: &str) -> Result<(), Reject> {
    if uri.starts_with('<') {
        return Err(Reject::new(400, "Bad Request-URI"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(Reject::new(400, "Bad Request-URI"));
    };
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(Reject::new(400, "Bad Request-URI"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" => {
            // `?` is a legal user-part character; after the host it starts URI headers.
            let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            if rest.is_empty()
                || hostpart.is_empty()
                || hostpart.contains('?')
                || rest.contains(['<', '>', '"'])
            {
                return Err(Reject::new(400, "Bad Request-URI"));
            }
            Ok(())
        }
        "tel" => Ok(()),
        _ => Err(Reject::new(416, "Unsupported URI Scheme")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_empty_params_is_rejected() {
        assert!(parse_via("SIP/2.0/UDP 192.0.2.15;;,;,,").is_none());
        let v = parse_via("SIP/2.0/udp h:5060 ;branch=z9hG4bK1;rport").expect("via");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.branch.as_deref(), Some("z9hG4bK1"));
        assert!(v.rport);
    }

    #[test]
    fn cseq_must_be_below_two_to_the_31() {
        assert_eq!(
            parse_cseq("2147483647 INVITE"),
            Some((2147483647, "INVITE"))
        );
        assert_eq!(parse_cseq("2147483648 INVITE"), None);
        assert_eq!(parse_cseq("36893488147419103232 REGISTER"), None);
    }

    #[test]
    fn unbalanced_quotes_fail_name_addr() {
        assert!(parse_name_addr("\"Mr. J. User <sip:j.user@example.com>").is_none());
        let n = parse_name_addr("\"A \\\" B\" <sip:a@b>;tag=x").expect("ok");
        assert_eq!(n.tag.as_deref(), Some("x"));
        assert_eq!(n.uri, "sip:a@b");
        let bare = parse_name_addr("sip:a@b;tag=7").expect("ok");
        assert_eq!(bare.uri, "sip:a@b");
        assert_eq!(bare.tag.as_deref(), Some("7"));
    }

    #[test]
    fn list_split_respects_quotes() {
        assert_eq!(
            split_list("a, \"b,c\" <x>, d"),
            vec!["a", "\"b,c\" <x>", "d"]
        );
    }
}
