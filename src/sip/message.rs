//! SIP message codec: framing, start line, headers and body (RFC 3261 §7, §18.3, §25).
//!
//! The parser is deliberately two-staged. [`parse_datagram`] / [`parse_stream`] only frame the
//! message: they find the start line, unfold and split the header lines, expand compact header
//! names and cut the body. Anything that is wrong *inside* an otherwise framed message (a
//! malformed request line, a header line without a colon, a Content-Length that disagrees with
//! the datagram) is kept as a [`Defect`] so that the endpoint can still answer `400` to the
//! sender, as RFC 4475 §3.1.2 expects. Grammar checks of individual headers live in
//! [`crate::sip::validate`].
//!
//! Caps on message size and header count make memory use per message bounded. Nothing here can
//! panic on any input: every index is checked.

use std::fmt;

/// Largest Content-Length we accept on a stream transport before the body arrives.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A framed SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request or status line.
    pub start: StartLine,
    /// Header fields in wire order, names expanded from compact form and lower-cased.
    pub headers: Vec<Header>,
    /// The body (already cut to Content-Length).
    pub body: Vec<u8>,
    /// The first non-fatal problem found while framing; a request with a defect gets a 4xx.
    pub defect: Option<Defect>,
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1).
    Request {
        method: Method,
        uri: String,
        version: String,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 §7.2).
    Response { code: u16, reason: String },
}

/// A header field. `name` is the long form in lower case (RFC 3261 §7.3.3 compact forms are
/// expanded), `value` is unfolded with surrounding whitespace trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// SIP request methods. Methods are case-sensitive (RFC 3261 §7.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Message,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Publish,
    /// Any other token (RFC 3261 `extension-method`).
    Extension(String),
}

/// Non-fatal problems found while framing a message. A request carrying one is answered with
/// the status code of [`Defect::status`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    #[error("malformed request line")]
    RequestLine,
    #[error("unsupported SIP version {0:?}")]
    Version(String),
    #[error("header line without a colon or with an invalid name")]
    HeaderLine,
    #[error("Content-Length {value:?} is not a number")]
    ContentLengthSyntax { value: String },
    #[error("Content-Length appears more than once")]
    ContentLengthRepeated,
    #[error("Content-Length {declared} exceeds the {actual} bytes present")]
    ContentLengthMismatch { declared: usize, actual: usize },
    #[error("header section is not UTF-8")]
    NotUtf8,
}

impl Defect {
    /// The response a request with this defect gets (RFC 3261 §21).
    pub fn status(&self) -> u16 {
        match self {
            Defect::Version(_) => 505,
            _ => 400,
        }
    }
}

/// Fatal framing errors: no response can be formed, the message is dropped and counted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("no empty line ends the header section")]
    NoHeaderEnd,
    #[error("start line is neither a request nor a status line")]
    StartLine,
    #[error("status code is not three digits in 100..=699")]
    StatusCode,
    #[error("more than {max} header fields")]
    TooManyHeaders { max: usize },
    #[error("stream message needs a valid Content-Length")]
    StreamContentLength,
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge { len: usize, max: usize },
}

/// Caps applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 8192,
            max_headers: 64,
        }
    }
}

/// Outcome of trying to frame a message from a stream buffer.
#[derive(Debug)]
pub enum StreamFrame {
    /// Not enough bytes yet.
    Incomplete,
    /// A message and the number of bytes it used.
    Complete(Box<Message>, usize),
    /// Keep-alive CRLFs (RFC 5626 §3.5.1) to skip.
    KeepAlive(usize),
}

/// Frame one message carried in a datagram (RFC 3261 §18.3: on datagram transports the body
/// is the rest of the packet; a Content-Length larger than that is an error, a smaller one
/// truncates the body).
pub fn parse_datagram(data: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    if data.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge {
            len: data.len(),
            max: limits.max_message_bytes,
        });
    }
    // A datagram is a whole message: one that ends right after its last header line (no
    // empty line) is accepted leniently as having no body (RFC 4475 §3.1.2.16 baddn).
    let (head_len, body_start) = match find_header_end(data) {
        Some(found) => found,
        None if data.ends_with(b"\n") => (data.len(), data.len()),
        None => return Err(ParseError::NoHeaderEnd),
    };
    let head = data.get(..head_len).ok_or(ParseError::NoHeaderEnd)?;
    let rest = data.get(body_start..).unwrap_or(&[]);
    let mut msg = parse_head(head, limits)?;
    let mut body = rest;
    match content_length(&msg.headers) {
        Ok(Some(declared)) => {
            if declared > rest.len() {
                msg.note(Defect::ContentLengthMismatch {
                    declared,
                    actual: rest.len(),
                });
            } else {
                body = rest.get(..declared).unwrap_or(rest);
            }
        }
        Ok(None) => {}
        Err(d) => msg.note(d),
    }
    msg.body = body.to_vec();
    Ok(msg)
}

/// Try to frame one message from the front of a stream buffer (RFC 3261 §18.3: on stream
/// transports Content-Length is mandatory and delimits the body).
pub fn parse_stream(buf: &[u8], limits: &Limits) -> Result<StreamFrame, ParseError> {
    let crlfs = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlfs > 0 {
        return Ok(StreamFrame::KeepAlive(crlfs));
    }
    let Some((head_len, body_start)) = find_header_end(buf) else {
        if buf.len() > limits.max_message_bytes {
            return Err(ParseError::TooLarge {
                len: buf.len(),
                max: limits.max_message_bytes,
            });
        }
        return Ok(StreamFrame::Incomplete);
    };
    let head = buf.get(..head_len).ok_or(ParseError::NoHeaderEnd)?;
    let mut msg = parse_head(head, limits)?;
    let declared = match content_length(&msg.headers) {
        Ok(Some(n)) => n,
        _ => return Err(ParseError::StreamContentLength),
    };
    if declared > MAX_BODY_BYTES || body_start + declared > limits.max_message_bytes {
        return Err(ParseError::BodyTooLarge {
            len: declared,
            max: limits.max_message_bytes.min(MAX_BODY_BYTES),
        });
    }
    let end = body_start + declared;
    let Some(body) = buf.get(body_start..end) else {
        return Ok(StreamFrame::Incomplete);
    };
    msg.body = body.to_vec();
    Ok(StreamFrame::Complete(Box::new(msg), end))
}

impl Message {
    fn note(&mut self, d: Defect) {
        if self.defect.is_none() {
            self.defect = Some(d);
        }
    }

    /// The first value of a header (by long lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// All values of a header, in order.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value.as_str())
    }

    /// How many header lines carry this name.
    pub fn count(&self, name: &str) -> usize {
        self.headers.iter().filter(|h| h.name == name).count()
    }

    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> Option<Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method.clone()),
            StartLine::Response { .. } => self
                .header("cseq")
                .and_then(|v| v.split_whitespace().nth(1))
                .map(Method::from_token),
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }
}

impl Method {
    /// Map a token to a method (case-sensitive, RFC 3261 §7.1).
    pub fn from_token(t: &str) -> Method {
        match t {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "UPDATE" => Method::Update,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Extension(other.to_string()),
        }
    }

    /// The wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Extension(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether a string is a non-empty RFC 3261 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Long form of an RFC 3261 §7.3.3 (and later RFCs') compact header name.
fn expand_compact(name: &str) -> Option<&'static str> {
    Some(match name {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        "x" => "session-expires",
        "a" => "accept-contact",
        "j" => "reject-contact",
        "d" => "request-disposition",
        "y" => "identity",
        "n" => "identity-info",
        _ => return None,
    })
}

/// Find the end of the header section: returns (length of the head without the blank line,
/// start of the body). Accepts CRLFCRLF and, leniently, LFLF.
fn find_header_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data.get(i) == Some(&b'\n') {
            match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => return Some((i + 1, i + 3)),
                (Some(b'\n'), _) => return Some((i + 1, i + 2)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_head(head: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().ok_or(ParseError::StartLine)?;
    let mut defect = None;
    let start = parse_start_line(first, &mut defect)?;

    let mut headers: Vec<Header> = Vec::new();
    let mut utf8_ok = true;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(_) => {
                utf8_ok = false;
                continue;
            }
        };
        // RFC 3261 §7.3.1: a line starting with whitespace continues the previous header.
        if text.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(h) => {
                    let cont = text.trim();
                    if !cont.is_empty() {
                        if !h.value.is_empty() {
                            h.value.push(' ');
                        }
                        h.value.push_str(cont);
                    }
                }
                None => {
                    defect.get_or_insert(Defect::HeaderLine);
                }
            }
            continue;
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                max: limits.max_headers,
            });
        }
        let Some((name, value)) = text.split_once(':') else {
            defect.get_or_insert(Defect::HeaderLine);
            continue;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            defect.get_or_insert(Defect::HeaderLine);
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let name = match expand_compact(&lower) {
            Some(long) => long.to_string(),
            None => lower,
        };
        headers.push(Header {
            name,
            value: value.trim().to_string(),
        });
    }
    if !utf8_ok {
        defect.get_or_insert(Defect::NotUtf8);
    }
    Ok(Message {
        start,
        headers,
        body: Vec::new(),
        defect,
    })
}

fn parse_start_line(line: &[u8], defect: &mut Option<Defect>) -> Result<StartLine, ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::StartLine)?;
    if let Some(rest) = text.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let code = parts.next().unwrap_or("");
        let reason = parts.next().unwrap_or("");
        if version != "2.0" {
            return Err(ParseError::StartLine);
        }
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::StatusCode);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::StatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::StatusCode);
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_string(),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between the three
    // parts (RFC 3261 §7.1; RFC 4475 §3.1.2.7, .8, .9 show why leniency here is wrong).
    let (method, rest) = text.split_once(' ').ok_or(ParseError::StartLine)?;
    if !is_token(method) {
        return Err(ParseError::StartLine);
    }
    let (uri, version) = rest.rsplit_once(' ').unwrap_or((rest, ""));
    let version_ok = version.len() == 7
        && version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if !version_ok {
        defect.get_or_insert(Defect::RequestLine);
    } else if version.get(4..).is_none_or(|v| v != "2.0") {
        defect.get_or_insert(Defect::Version(version.to_string()));
    }
    if uri.is_empty() || uri.contains([' ', '\t']) {
        defect.get_or_insert(Defect::RequestLine);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: uri.to_string(),
        version: version.to_string(),
    })
}

/// Content-Length of a header list: `Ok(None)` when absent.
fn content_length(headers: &[Header]) -> Result<Option<usize>, Defect> {
    let mut found = None;
    for h in headers.iter().filter(|h| h.name == "content-length") {
        if found.is_some() {
            return Err(Defect::ContentLengthRepeated);
        }
        let v = h.value.as_str();
        if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Defect::ContentLengthSyntax {
                value: v.chars().take(32).collect(),
            });
        }
        found = Some(
            v.parse::<usize>()
                .map_err(|_| Defect::ContentLengthSyntax {
                    value: v.to_string(),
                })?,
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Message {
        parse_datagram(s.as_bytes(), &Limits::default()).expect("frames")
    }

    #[test]
    fn compact_names_and_folding_are_normalised() {
        let m = p("OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: a\r\n  b\r\n\tc\r\nl: 0\r\n\r\n");
        assert_eq!(m.header("via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
        assert_eq!(m.header("subject"), Some("a b c"));
        assert_eq!(m.header("content-length"), Some("0"));
        assert!(m.defect.is_none());
    }

    #[test]
    fn shorter_content_length_truncates_datagram_body() {
        let m = p("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef");
        assert_eq!(m.body, b"abc");
    }

    #[test]
    fn longer_content_length_is_a_defect() {
        let m = p("MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 30\r\n\r\nabc");
        assert_eq!(
            m.defect,
            Some(Defect::ContentLengthMismatch {
                declared: 30,
                actual: 3
            })
        );
    }

    #[test]
    fn double_space_in_request_line_is_a_defect() {
        let m = p("INVITE  sip:a@b  SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(m.defect, Some(Defect::RequestLine));
    }

    #[test]
    fn other_version_gets_505() {
        let m = p("OPTIONS sip:a@b SIP/7.0\r\nl: 0\r\n\r\n");
        assert_eq!(m.defect.map(|d| d.status()), Some(505));
    }

    #[test]
    fn status_code_out_of_range_is_fatal() {
        let r = parse_datagram(b"SIP/2.0 4294967301 Nope\r\n\r\n", &Limits::default());
        assert_eq!(r, Err(ParseError::StatusCode));
    }

    #[test]
    fn stream_framing_waits_for_body() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nab";
        assert!(matches!(
            parse_stream(msg, &Limits::default()),
            Ok(StreamFrame::Incomplete)
        ));
        let full = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nabcdNEXT";
        match parse_stream(full, &Limits::default()) {
            Ok(StreamFrame::Complete(m, used)) => {
                assert_eq!(m.body, b"abcd");
                assert_eq!(used, full.len() - 4);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn size_and_header_caps_hold() {
        let big = vec![b'a'; 9000];
        assert!(matches!(
            parse_datagram(&big, &Limits::default()),
            Err(ParseError::TooLarge { .. })
        ));
        let mut many = String::from("OPTIONS sip:a@b SIP/2.0\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: y\r\n"));
        }
        many.push_str("\r\n");
        assert!(matches!(
            parse_datagram(many.as_bytes(), &Limits::default()),
            Err(ParseError::TooManyHeaders { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_datagram(&data, &Limits::default());
            let _ = parse_stream(&data, &Limits::default());
        }
    }
}
