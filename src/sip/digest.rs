//! HTTP/SIP digest access authentication, both sides, sans-IO.
//!
//! Implements RFC 2617 §3 (MD5, MD5-sess, `qop=auth`/`auth-int`, and the RFC 2069 form without
//! qop), RFC 7616 §3 (SHA-256, SHA-256-sess) and the SIP use of those algorithms defined by
//! RFC 8760 (which updates RFC 3261 §22.4). This module owns parsing of `WWW-Authenticate` /
//! `Proxy-Authenticate` challenges and `Authorization` / `Proxy-Authorization` credentials,
//! building credentials for a challenge (client side) and checking them (server side).
//!
//! It must not touch the clock, sockets or files, and it never holds a plaintext password
//! longer than one call. Nonce issue, expiry and replay checks belong to the caller (the gate's
//! `nonce` module); [`verify`] only checks the digest arithmetic. The `response` of a parsed
//! [`Authorization`] is a secret and prints as `REDACTED`.

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Longest header value we parse; a longer one is refused before any work (STYLE: caps on
/// everything from outside).
pub const MAX_HEADER_VALUE_LEN: usize = 4096;

/// Most parameters we accept in one challenge or credential.
pub const MAX_PARAMS: usize = 32;

/// A digest algorithm (RFC 7616 §3.2, RFC 8760 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

/// Quality of protection (RFC 2617 §3.2.1, RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    Auth,
    AuthInt,
}

/// A parsed `Digest` challenge. `domain` and other parameters are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// Offered qop values we understand, in the order offered. Empty means the RFC 2069 form.
    pub qop: Vec<Qop>,
    pub stale: bool,
}

/// What the client authenticates with. The password is only borrowed for one call.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

impl fmt::Debug for ClientCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("username", &self.username)
            .field("password", &"REDACTED")
            .finish()
    }
}

/// The request the credentials are computed over.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParams<'a> {
    pub method: &'a str,
    /// The `uri` parameter: the Request-URI as sent (RFC 3261 §22.4).
    pub uri: &'a str,
    /// The message body, hashed only for `qop=auth-int`.
    pub body: &'a [u8],
    /// Nonce count for this nonce, starting at 1 (RFC 7616 §3.4).
    pub nc: u32,
    /// Client nonce, from the caller's RNG.
    pub cnonce: &'a str,
}

/// Parsed credentials from an `Authorization` / `Proxy-Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Lower-case hex response; a secret, redacted in `Debug`.
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub qop: Option<Qop>,
    pub nc: Option<u32>,
    pub opaque: Option<String>,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .field("uri", &self.uri)
            .field("response", &"REDACTED")
            .field("algorithm", &self.algorithm)
            .field("cnonce", &self.cnonce)
            .field("qop", &self.qop)
            .field("nc", &self.nc)
            .field("opaque", &self.opaque)
            .finish()
    }
}

/// Why a challenge or credential could not be used. All of these are the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DigestError {
    #[error("header value of {len} bytes exceeds the {max}-byte cap")]
    TooLong { len: usize, max: usize },
    #[error("authentication scheme {scheme:?} is not Digest")]
    NotDigest { scheme: String },
    #[error("syntax error at byte {at}: expected {expected}")]
    Syntax { at: usize, expected: &'static str },
    #[error("unterminated quoted string starting at byte {at}")]
    UnterminatedQuote { at: usize },
    #[error("more than {max} parameters")]
    TooManyParams { max: usize },
    #[error("parameter {name:?} appears twice")]
    DuplicateParam { name: String },
    #[error("required parameter {name} is missing")]
    MissingParam { name: &'static str },
    #[error("unsupported algorithm {name:?}")]
    UnsupportedAlgorithm { name: String },
    #[error("no supported qop in {value:?}")]
    UnsupportedQop { value: String },
    #[error("nonce count {value:?} is not 8 lower-case hex digits")]
    BadNonceCount { value: String },
    #[error("userhash credentials are not supported")]
    UserhashUnsupported,
}

impl Algorithm {
    /// The token as written on the wire (RFC 7616 §3.3, case preserved from the RFC).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Parses an algorithm token; comparison is case-insensitive (RFC 7616 §3.3).
    pub fn parse(token: &str) -> Result<Self, DigestError> {
        const ALL: [Algorithm; 4] = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ];
        ALL.into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(token))
            .ok_or_else(|| DigestError::UnsupportedAlgorithm {
                name: token.to_owned(),
            })
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Preference for [`select_challenge`]: the SHA-256 family over MD5 (RFC 8760 §2.4).
    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 0,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 1,
        }
    }

    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex_lower(&Md5::digest(data)),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex_lower(&Sha256::digest(data)),
        }
    }

    /// Length in hex digits of this algorithm's hash output.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 32,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 64,
        }
    }
}

impl Qop {
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    fn parse(token: &str) -> Option<Self> {
        if token.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if token.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

/// Parses a challenge: the header value after `WWW-Authenticate:` / `Proxy-Authenticate:`.
///
/// Parameter names are case-insensitive, values may be quoted or tokens, unknown parameters are
/// ignored (RFC 7616 §3.3). `realm` and `nonce` are required.
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let params = parse_digest_params(value)?;
    let realm = params.required("realm")?;
    let nonce = params.required("nonce")?;
    let algorithm = match params.find("algorithm") {
        // RFC 2617 §3.2.1: absent means MD5.
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a)?,
    };
    let qop = match params.find("qop") {
        None => Vec::new(),
        Some(list) => {
            // RFC 7616 §3.3: a quoted, comma-separated list; unknown values are ignored, but an
            // offer with none we understand cannot be answered.
            let mut qops = Vec::new();
            for q in list.split(',').filter_map(|t| Qop::parse(t.trim())) {
                if !qops.contains(&q) {
                    qops.push(q);
                }
            }
            if qops.is_empty() {
                return Err(DigestError::UnsupportedQop {
                    value: list.to_owned(),
                });
            }
            qops
        }
    };
    let stale = params
        .find("stale")
        .is_some_and(|s| s.eq_ignore_ascii_case("true"));
    Ok(Challenge {
        realm: realm.to_owned(),
        nonce: nonce.to_owned(),
        opaque: params.find("opaque").map(str::to_owned),
        algorithm,
        qop,
        stale,
    })
}

/// Picks one of several challenges offered in one response (RFC 8760 §2.4).
///
/// Unparseable or unsupported challenges are skipped. Local policy prefers the SHA-256 family
/// over MD5; among equals the topmost wins, as RFC 8760 §2.4 asks.
pub fn select_challenge(values: &[&str]) -> Option<Challenge> {
    let mut best: Option<Challenge> = None;
    for ch in values.iter().filter_map(|v| parse_challenge(v).ok()) {
        let better = best
            .as_ref()
            .is_none_or(|b| ch.algorithm.strength() > b.algorithm.strength());
        if better {
            best = Some(ch);
        }
    }
    best
}

/// Builds the full `Authorization` header value answering `ch` for the request in `p`.
///
/// Chooses `qop=auth` when offered, `auth-int` only when `auth` is not, and the RFC 2069 form
/// when the challenge offered no qop.
pub fn authorization(ch: &Challenge, cred: &ClientCredentials, p: &ResponseParams) -> String {
    let qop = choose_qop(&ch.qop);
    let base = ha1_hex(ch.algorithm, cred.username, &ch.realm, cred.password);
    let ha1 = session_ha1(ch.algorithm, &base, &ch.nonce, p.cnonce);
    let nc = format_nc(p.nc);
    let response = response_hex(
        ch.algorithm,
        &ha1,
        &ch.nonce,
        qop.map(|q| (q, nc.as_str(), p.cnonce)),
        p.method,
        p.uri,
        p.body,
    );

    let mut out = String::with_capacity(256);
    out.push_str("Digest username=");
    push_quoted(&mut out, cred.username);
    out.push_str(", realm=");
    push_quoted(&mut out, &ch.realm);
    out.push_str(", nonce=");
    push_quoted(&mut out, &ch.nonce);
    out.push_str(", uri=");
    push_quoted(&mut out, p.uri);
    out.push_str(", response=");
    push_quoted(&mut out, &response);
    out.push_str(", algorithm=");
    out.push_str(ch.algorithm.as_str());
    // RFC 2617 §3.2.2: cnonce and nc MUST be sent with qop and MUST NOT without it; the
    // -sess HA1 (§3.2.2.2) needs cnonce even without qop.
    if qop.is_some() || ch.algorithm.is_sess() {
        out.push_str(", cnonce=");
        push_quoted(&mut out, p.cnonce);
    }
    if let Some(q) = qop {
        out.push_str(", qop=");
        out.push_str(q.as_str());
        out.push_str(", nc=");
        out.push_str(&nc);
    }
    if let Some(opaque) = &ch.opaque {
        out.push_str(", opaque=");
        push_quoted(&mut out, opaque);
    }
    out
}

/// `H(username ":" realm ":" password)` in lower-case hex (RFC 7616 §3.4.2). For the `-sess`
/// algorithms this is the base value that is then hashed with the nonces; it is what the
/// dialplan stores instead of the password.
pub fn ha1_hex(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// Parses credentials: the header value after `Authorization:` / `Proxy-Authorization:`.
///
/// `username`, `realm`, `nonce`, `uri` and `response` are required; with `qop`, `cnonce` and
/// `nc` are required too (RFC 7616 §3.4).
pub fn parse_authorization(value: &str) -> Result<Authorization, DigestError> {
    let params = parse_digest_params(value)?;
    if params
        .find("userhash")
        .is_some_and(|u| u.eq_ignore_ascii_case("true"))
    {
        // RFC 7616 §3.4.4: we never offer userhash, so a client must not use it.
        return Err(DigestError::UserhashUnsupported);
    }
    let algorithm = match params.find("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(a)?,
    };
    let qop = match params.find("qop") {
        None => None,
        Some(q) => Some(Qop::parse(q).ok_or_else(|| DigestError::UnsupportedQop {
            value: q.to_owned(),
        })?),
    };
    let (cnonce, nc) = if qop.is_some() {
        let cnonce = params.required("cnonce")?;
        let nc = parse_nc(params.required("nc")?)?;
        (Some(cnonce.to_owned()), Some(nc))
    } else {
        let nc = params.find("nc").map(parse_nc).transpose()?;
        (params.find("cnonce").map(str::to_owned), nc)
    };
    if algorithm.is_sess() && cnonce.is_none() {
        // RFC 2617 §3.2.2.2: the -sess HA1 needs the client nonce.
        return Err(DigestError::MissingParam { name: "cnonce" });
    }
    Ok(Authorization {
        username: params.required("username")?.to_owned(),
        realm: params.required("realm")?.to_owned(),
        nonce: params.required("nonce")?.to_owned(),
        uri: params.required("uri")?.to_owned(),
        response: params.required("response")?.to_ascii_lowercase(),
        algorithm,
        cnonce,
        qop,
        nc,
        opaque: params.find("opaque").map(str::to_owned),
    })
}

/// Checks the digest arithmetic of `auth` against the stored `ha1_hex` (the base HA1 for
/// `auth.algorithm`'s hash: MD5 HA1 for MD5/MD5-sess, SHA-256 HA1 for the SHA-256 family).
///
/// The comparison of the response is constant-time. Nonce freshness, nonce-count replay,
/// realm and that `uri` names this request are the caller's checks.
pub fn verify(auth: &Authorization, ha1_hex: &str, method: &str, body: &[u8]) -> bool {
    let alg = auth.algorithm;
    if ha1_hex.len() != alg.hex_len() {
        return false;
    }
    let qop_parts = match (auth.qop, auth.nc, auth.cnonce.as_deref()) {
        (Some(q), Some(nc), Some(cnonce)) => Some((q, format_nc(nc), cnonce)),
        (Some(_), _, _) => return false,
        (None, _, _) => None,
    };
    let ha1 = if alg.is_sess() {
        match auth.cnonce.as_deref() {
            Some(cnonce) => session_ha1(alg, &ha1_hex.to_ascii_lowercase(), &auth.nonce, cnonce),
            None => return false,
        }
    } else {
        ha1_hex.to_ascii_lowercase()
    };
    let expected = response_hex(
        alg,
        &ha1,
        &auth.nonce,
        qop_parts.as_ref().map(|(q, nc, c)| (*q, nc.as_str(), *c)),
        method,
        &auth.uri,
        body,
    );
    let given = auth.response.to_ascii_lowercase();
    // Lengths are public (fixed per algorithm); only the content is compared in constant time.
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// `nc` as 8 lower-case hex digits (RFC 7616 §3.4: `nc-value = 8LHEX`).
pub fn format_nc(nc: u32) -> String {
    format!("{nc:08x}")
}

// ---------------------------------------------------------------------------------------------
// helpers

fn choose_qop(offered: &[Qop]) -> Option<Qop> {
    if offered.contains(&Qop::Auth) {
        Some(Qop::Auth)
    } else {
        offered.first().copied()
    }
}

/// RFC 2617 §3.2.2.2: for `-sess`, HA1 = H(H(A1base) ":" nonce ":" cnonce).
fn session_ha1(alg: Algorithm, base_ha1: &str, nonce: &str, cnonce: &str) -> String {
    if alg.is_sess() {
        alg.hash_hex(format!("{base_ha1}:{nonce}:{cnonce}").as_bytes())
    } else {
        base_ha1.to_owned()
    }
}

/// RFC 2617 §3.2.2.1 / RFC 7616 §3.4.1: the request-digest.
fn response_hex(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(Qop, &str, &str)>,
    method: &str,
    uri: &str,
    body: &[u8],
) -> String {
    // RFC 2617 §3.2.2.3: A2 = Method ":" uri [":" H(entity-body)] for auth-int.
    let ha2 = match qop {
        Some((Qop::AuthInt, _, _)) => {
            let hbody = alg.hash_hex(body);
            alg.hash_hex(format!("{method}:{uri}:{hbody}").as_bytes())
        }
        _ => alg.hash_hex(format!("{method}:{uri}").as_bytes()),
    };
    let kd = match qop {
        Some((q, nc, cnonce)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:{}:{ha2}", q.as_str()),
        // RFC 2069 compatibility (RFC 2617 §3.2.2.1, no qop).
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    alg.hash_hex(kd.as_bytes())
}

fn parse_nc(value: &str) -> Result<u32, DigestError> {
    let ok = value.len() == 8
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(DigestError::BadNonceCount {
            value: value.to_owned(),
        });
    }
    u32::from_str_radix(value, 16).map_err(|_| DigestError::BadNonceCount {
        value: value.to_owned(),
    })
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// RFC 7230 §3.2.6 quoted-string: escape `"` and `\`.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Parameters of one `Digest` credential or challenge, names lower-cased.
struct Params(Vec<(String, String)>);

impl Params {
    fn find(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &'static str) -> Result<&str, DigestError> {
        self.find(name).ok_or(DigestError::MissingParam { name })
    }
}

/// RFC 3261 §25.1 token characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

/// Splits `Digest name=value, name="quoted", ...` into parameters.
fn parse_digest_params(value: &str) -> Result<Params, DigestError> {
    if value.len() > MAX_HEADER_VALUE_LEN {
        return Err(DigestError::TooLong {
            len: value.len(),
            max: MAX_HEADER_VALUE_LEN,
        });
    }
    let trimmed_start = value.len() - value.trim_start().len();
    let rest = &value[trimmed_start..];
    let scheme_len = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
    let scheme = &rest[..scheme_len];
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest {
            scheme: scheme.to_owned(),
        });
    }

    let mut chars = value.char_indices().peekable();
    // Skip past the scheme: every char up to trimmed_start + scheme_len.
    while chars
        .peek()
        .is_some_and(|&(i, _)| i < trimmed_start + scheme_len)
    {
        chars.next();
    }
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
            chars.next();
        }
    };
    // RFC 7235 §2.1: at least one space between scheme and parameters.
    match chars.peek() {
        Some(&(_, c)) if c.is_whitespace() => {}
        Some(&(at, _)) => {
            return Err(DigestError::Syntax {
                at,
                expected: "whitespace after scheme",
            })
        }
        None => return Ok(Params(Vec::new())),
    }

    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        // Empty list elements are allowed (RFC 7230 §7).
        while chars
            .peek()
            .is_some_and(|&(_, c)| c.is_whitespace() || c == ',')
        {
            chars.next();
        }
        let Some(&(name_at, _)) = chars.peek() else {
            break;
        };
        let mut name = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if !is_token_char(c) {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        if name.is_empty() {
            return Err(DigestError::Syntax {
                at: name_at,
                expected: "parameter name",
            });
        }
        skip_ws(&mut chars);
        match chars.next() {
            Some((_, '=')) => {}
            Some((at, _)) => {
                return Err(DigestError::Syntax {
                    at,
                    expected: "'='",
                })
            }
            None => {
                return Err(DigestError::Syntax {
                    at: value.len(),
                    expected: "'='",
                })
            }
        }
        skip_ws(&mut chars);
        let mut val = String::new();
        match chars.peek().copied() {
            Some((quote_at, '"')) => {
                chars.next();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, escaped)) => val.push(escaped),
                            None => break,
                        },
                        _ => val.push(c),
                    }
                }
                if !closed {
                    return Err(DigestError::UnterminatedQuote { at: quote_at });
                }
            }
            Some((_, _)) => {
                while let Some(&(_, c)) = chars.peek() {
                    if c == ',' || c.is_whitespace() {
                        break;
                    }
                    if c == '"' {
                        // A quote inside a token is malformed, not a new string.
                        let at = chars.peek().map_or(value.len(), |&(i, _)| i);
                        return Err(DigestError::Syntax {
                            at,
                            expected: "token character",
                        });
                    }
                    val.push(c);
                    chars.next();
                }
                if val.is_empty() {
                    let at = chars.peek().map_or(value.len(), |&(i, _)| i);
                    return Err(DigestError::Syntax {
                        at,
                        expected: "parameter value",
                    });
                }
            }
            None => {
                return Err(DigestError::Syntax {
                    at: value.len(),
                    expected: "parameter value",
                })
            }
        }
        skip_ws(&mut chars);
        match chars.peek() {
            None | Some(&(_, ',')) => {}
            Some(&(at, _)) => {
                return Err(DigestError::Syntax {
                    at,
                    expected: "',' between parameters",
                })
            }
        }
        if params.iter().any(|(n, _)| *n == name) {
            // Ambiguous credentials are refused rather than guessed (RFC 7616 §3.3: each
            // parameter at most once).
            return Err(DigestError::DuplicateParam { name });
        }
        if params.len() >= MAX_PARAMS {
            return Err(DigestError::TooManyParams { max: MAX_PARAMS });
        }
        params.push((name, val));
    }
    Ok(Params(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC2617_AUTH: &str = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn rfc2617_example_verifies() {
        // RFC 2617 §3.5.
        let auth = parse_authorization(RFC2617_AUTH).unwrap();
        assert_eq!(auth.nc, Some(1));
        assert_eq!(auth.qop, Some(Qop::Auth));
        let ha1 = ha1_hex(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&auth, &ha1, "GET", b""));
        let wrong = ha1_hex(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "circle of life",
        );
        assert!(!verify(&auth, &wrong, "GET", b""));
        assert!(!verify(&auth, &ha1, "POST", b""));
    }

    #[test]
    fn rfc2617_example_is_reproduced_by_the_client() {
        let ch = parse_challenge(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int",
               nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
               opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert_eq!(ch.qop, vec![Qop::Auth, Qop::AuthInt]);
        let value = authorization(
            &ch,
            &ClientCredentials {
                username: "Mufasa",
                password: "Circle Of Life",
            },
            &ResponseParams {
                method: "GET",
                uri: "/dir/index.html",
                body: b"",
                nc: 1,
                cnonce: "0a4f113b",
            },
        );
        assert!(value.contains(r#"response="6629fae49393a05397450978507c4ef1""#));
        assert!(value.contains("qop=auth,"));
        assert!(value.contains("nc=00000001"));
        assert!(value.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    fn rfc7616_vector(alg: Algorithm, expected: &str) {
        // RFC 7616 §3.9.1.
        let ch = parse_challenge(&format!(
            r#"Digest
       realm="http-auth@example.org",
       qop="auth, auth-int",
       algorithm={},
       nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
       opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
            alg.as_str()
        ))
        .unwrap();
        assert_eq!(ch.algorithm, alg);
        let value = authorization(
            &ch,
            &ClientCredentials {
                username: "Mufasa",
                password: "Circle of Life",
            },
            &ResponseParams {
                method: "GET",
                uri: "/dir/index.html",
                body: b"",
                nc: 1,
                cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            },
        );
        assert!(
            value.contains(&format!(r#"response="{expected}""#)),
            "{value}"
        );
        let auth = parse_authorization(&value).unwrap();
        let ha1 = ha1_hex(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert!(verify(&auth, &ha1, "GET", b""));
    }

    #[test]
    fn rfc7616_md5_vector() {
        rfc7616_vector(Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_vector() {
        rfc7616_vector(
            Algorithm::Sha256,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        );
    }

    #[test]
    fn client_and_server_agree_for_every_algorithm_and_qop() {
        let algs = [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ];
        let qops: [&[Qop]; 4] = [
            &[],
            &[Qop::Auth],
            &[Qop::AuthInt],
            &[Qop::AuthInt, Qop::Auth],
        ];
        for alg in algs {
            for offered in qops {
                let ch = Challenge {
                    realm: "dialback".into(),
                    nonce: "n0nce".into(),
                    opaque: None,
                    algorithm: alg,
                    qop: offered.to_vec(),
                    stale: false,
                };
                let body = b"MAINTAIN-3";
                let value = authorization(
                    &ch,
                    &ClientCredentials {
                        username: "alice",
                        password: "s3cret",
                    },
                    &ResponseParams {
                        method: "MESSAGE",
                        uri: "sip:gate@example.net",
                        body,
                        nc: 0x1a,
                        cnonce: "abc",
                    },
                );
                let auth = parse_authorization(&value).unwrap();
                assert_eq!(auth.algorithm, alg);
                let expected_qop = if offered.contains(&Qop::Auth) {
                    Some(Qop::Auth)
                } else {
                    offered.first().copied()
                };
                assert_eq!(auth.qop, expected_qop, "{value}");
                let ha1 = ha1_hex(alg, "alice", "dialback", "s3cret");
                assert!(verify(&auth, &ha1, "MESSAGE", body), "{alg:?} {offered:?}");
                // auth-int covers the body; auth does not.
                let tampered = verify(&auth, &ha1, "MESSAGE", b"MAINTAIN-4");
                assert_eq!(tampered, expected_qop != Some(Qop::AuthInt));
                let bad = ha1_hex(alg, "alice", "dialback", "s3creT");
                assert!(!verify(&auth, &bad, "MESSAGE", body));
            }
        }
    }

    #[test]
    fn verify_refuses_a_ha1_of_the_wrong_hash() {
        let ch = parse_challenge(r#"Digest realm="r", nonce="n", algorithm=SHA-256"#).unwrap();
        let value = authorization(
            &ch,
            &ClientCredentials {
                username: "u",
                password: "p",
            },
            &ResponseParams {
                method: "MESSAGE",
                uri: "sip:x",
                body: b"",
                nc: 1,
                cnonce: "c",
            },
        );
        let auth = parse_authorization(&value).unwrap();
        assert!(!verify(
            &auth,
            &ha1_hex(Algorithm::Md5, "u", "r", "p"),
            "MESSAGE",
            b""
        ));
        assert!(verify(
            &auth,
            &ha1_hex(Algorithm::Sha256, "u", "r", "p"),
            "MESSAGE",
            b""
        ));
    }

    #[test]
    fn nc_is_eight_lower_hex_digits() {
        assert_eq!(format_nc(1), "00000001");
        assert_eq!(format_nc(0xdead_beef), "deadbeef");
        assert_eq!(parse_nc("0000000a"), Ok(10));
        assert!(parse_nc("0000000A").is_err());
        assert!(parse_nc("1").is_err());
        assert!(parse_nc("000000001").is_err());
        assert!(parse_nc("0000000g").is_err());
        assert!(parse_nc("+0000001").is_err());
    }

    #[test]
    fn challenge_parsing_is_case_insensitive_and_ignores_unknown_params() {
        let ch = parse_challenge(
            "  dIgEsT REALM=sip.example.com,NONCE=\"a,b\\\"c\" , Algorithm=sha-256-SESS, \
             domain=\"sip:a sip:b\", stale=TRUE, charset=UTF-8,,",
        )
        .unwrap();
        assert_eq!(ch.realm, "sip.example.com");
        assert_eq!(ch.nonce, "a,b\"c");
        assert_eq!(ch.algorithm, Algorithm::Sha256Sess);
        assert!(ch.stale);
        assert!(ch.qop.is_empty());
        assert_eq!(ch.opaque, None);
    }

    #[test]
    fn challenge_torture_errors() {
        type Check = fn(&DigestError) -> bool;
        let cases: &[(&str, Check)] = &[
            (r#"Basic realm="x""#, |e| {
                matches!(e, DigestError::NotDigest { .. })
            }),
            (r#"Digest nonce="y""#, |e| {
                *e == DigestError::MissingParam { name: "realm" }
            }),
            (r#"Digest realm="x""#, |e| {
                *e == DigestError::MissingParam { name: "nonce" }
            }),
            (r#"Digest realm="x, nonce=y"#, |e| {
                matches!(e, DigestError::UnterminatedQuote { .. })
            }),
            (r#"Digest realm="x" nonce="y""#, |e| {
                matches!(e, DigestError::Syntax { .. })
            }),
            (
                r#"Digest realm="x", nonce="y", algorithm=SHA-512-256"#,
                |e| matches!(e, DigestError::UnsupportedAlgorithm { .. }),
            ),
            (r#"Digest realm="x", nonce="y", qop="auth-conf""#, |e| {
                matches!(e, DigestError::UnsupportedQop { .. })
            }),
            (r#"Digest realm="x", realm="z", nonce="y""#, |e| {
                matches!(e, DigestError::DuplicateParam { .. })
            }),
            (r#"Digest realm=, nonce="y""#, |e| {
                matches!(e, DigestError::Syntax { .. })
            }),
            (r#"Digest realm"x", nonce="y""#, |e| {
                matches!(e, DigestError::Syntax { .. })
            }),
            (r#"Digestrealm="x""#, |e| {
                matches!(e, DigestError::NotDigest { .. })
            }),
            ("", |e| matches!(e, DigestError::NotDigest { .. })),
            ("Digest", |e| {
                *e == DigestError::MissingParam { name: "realm" }
            }),
            (r#"Digest realm="x", nonce="y", q"#, |e| {
                matches!(e, DigestError::Syntax { .. })
            }),
            (r#"Digest realm="x", nonce="y\"#, |e| {
                matches!(e, DigestError::UnterminatedQuote { .. })
            }),
        ];
        for (input, check) in cases {
            let err = parse_challenge(input).unwrap_err();
            assert!(check(&err), "{input:?} gave {err:?}");
        }
        let long = format!(r#"Digest realm="{}", nonce="y""#, "x".repeat(5000));
        assert!(matches!(
            parse_challenge(&long),
            Err(DigestError::TooLong { .. })
        ));
    }

    #[test]
    fn authorization_torture() {
        // Commas and escaped quotes inside quoted values, odd spacing.
        let a = parse_authorization(
            "Digest username = \"al\\\"i,ce\" ,realm=\"r, r\",nonce=\"n\",uri=\"sip:a@b;x=\\\"y\\\"\",\
             response=\"ABCDEF\",qop=auth,nc=00000002,cnonce=\"c\"",
        )
        .unwrap();
        assert_eq!(a.username, "al\"i,ce");
        assert_eq!(a.realm, "r, r");
        assert_eq!(a.uri, "sip:a@b;x=\"y\"");
        assert_eq!(a.response, "abcdef");
        assert_eq!(a.nc, Some(2));

        let missing = [
            (
                r#"Digest realm="r", nonce="n", uri="u", response="x""#,
                "username",
            ),
            (
                r#"Digest username="u", nonce="n", uri="u", response="x""#,
                "realm",
            ),
            (
                r#"Digest username="u", realm="r", uri="u", response="x""#,
                "nonce",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", response="x""#,
                "uri",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u""#,
                "response",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001"#,
                "cnonce",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c""#,
                "nc",
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", algorithm=MD5-sess"#,
                "cnonce",
            ),
        ];
        for (input, name) in missing {
            assert_eq!(
                parse_authorization(input),
                Err(DigestError::MissingParam { name }),
                "{input}"
            );
        }
        assert_eq!(
            parse_authorization(
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", userhash=true"#
            ),
            Err(DigestError::UserhashUnsupported)
        );
        assert!(matches!(
            parse_authorization(
                r#"Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=1, cnonce="c""#
            ),
            Err(DigestError::BadNonceCount { .. })
        ));
    }

    #[test]
    fn parsers_never_panic_on_prefixes_of_valid_input() {
        for end in (0..=RFC2617_AUTH.len()).filter(|&i| RFC2617_AUTH.is_char_boundary(i)) {
            let _ = parse_authorization(&RFC2617_AUTH[..end]);
            let _ = parse_challenge(&RFC2617_AUTH[..end]);
        }
        let _ = parse_challenge("Digest realm=\"\u{e9}\u{1F600}\", nonce=\u{e9}");
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_input(s in ".{0,300}") {
            let _ = parse_challenge(&s);
            let _ = parse_authorization(&s);
            let _ = parse_authorization(&format!("Digest {s}"));
        }

        #[test]
        fn parsers_never_panic_on_param_soup(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce",
                    "algorithm", "=", ",", "\"", "\\", " ", "auth", "MD5-sess", "00000001",
                    "\u{e9}", "\r\n", "x",
                ]),
                0..40,
            )
        ) {
            let s = format!("Digest {}", parts.concat());
            let _ = parse_challenge(&s);
            if let Ok(a) = parse_authorization(&s) {
                let _ = verify(&a, &"0".repeat(64), "MESSAGE", b"");
                let _ = verify(&a, &"0".repeat(32), "MESSAGE", b"");
            }
        }
    }

    #[test]
    fn select_prefers_sha256_then_topmost() {
        let offered = [
            r#"Digest realm="a", nonce="1", algorithm=MD5, qop="auth""#,
            r#"Basic realm="b""#,
            r#"Digest realm="c", nonce="2", algorithm=SHA-512-256"#,
            r#"Digest realm="d", nonce="3", algorithm=SHA-256, qop="auth""#,
            r#"Digest realm="e", nonce="4", algorithm=SHA-256-sess"#,
        ];
        let ch = select_challenge(&offered).unwrap();
        assert_eq!(ch.realm, "d");
        assert_eq!(select_challenge(&offered[..3]).unwrap().realm, "a");
        assert_eq!(select_challenge(&offered[1..3]), None);
        assert_eq!(select_challenge(&[]), None);
    }

    #[test]
    fn debug_redacts_the_response_and_password() {
        let auth = parse_authorization(RFC2617_AUTH).unwrap();
        let dbg = format!("{auth:?}");
        assert!(!dbg.contains("6629fae49393a05397450978507c4ef1"));
        assert!(dbg.contains("REDACTED"));
        let cred = ClientCredentials {
            username: "u",
            password: "hunter2",
        };
        assert!(!format!("{cred:?}").contains("hunter2"));
    }

    #[test]
    fn quoting_round_trips_awkward_usernames() {
        let ch = parse_challenge(r#"Digest realm="r\\x", nonce="n""#).unwrap();
        assert_eq!(ch.realm, "r\\x");
        let value = authorization(
            &ch,
            &ClientCredentials {
                username: "a\"b\\c",
                password: "p",
            },
            &ResponseParams {
                method: "REGISTER",
                uri: "sip:r",
                body: b"",
                nc: 1,
                cnonce: "c",
            },
        );
        let auth = parse_authorization(&value).unwrap();
        assert_eq!(auth.username, "a\"b\\c");
        assert_eq!(auth.realm, "r\\x");
        assert_eq!(auth.qop, None);
        assert_eq!(auth.cnonce, None);
        let ha1 = ha1_hex(Algorithm::Md5, "a\"b\\c", "r\\x", "p");
        assert!(verify(&auth, &ha1, "REGISTER", b""));
    }
}
