//! SIP digest authentication (RFC 3261 §22.4 over RFC 7616 / RFC 2617), test side only.
//!
//! Two uses: answering a challenge from a hand-rolled client (the SIPp self-tests need
//! SHA-256, which SIPp 3.6 cannot compute), and checking the credentials a client sent to a
//! SIPp registrar where SIPp `verifyauth` cannot (SHA-256, or `Proxy-Authorization`). This is a
//! reference for the tests, independent of the crate's own digest code on purpose.

use std::collections::HashMap;
use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// `algorithm=` values (RFC 7616 §3.3); absent means MD5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    pub fn parse(token: Option<&str>) -> Option<Self> {
        match token.map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Some(Self::Md5),
            Some("MD5-SESS") => Some(Self::Md5Sess),
            Some("SHA-256") => Some(Self::Sha256),
            Some("SHA-256-SESS") => Some(Self::Sha256Sess),
            Some(_) => None,
        }
    }

    pub fn token(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Lowercase hex of H(data).
    pub fn hash(self, data: &[u8]) -> String {
        let bytes: Vec<u8> = match self {
            Self::Md5 | Self::Md5Sess => Md5::digest(data).to_vec(),
            Self::Sha256 | Self::Sha256Sess => Sha256::digest(data).to_vec(),
        };
        let mut hex = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    fn is_session(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }
}

/// The auth-params of a `Digest` challenge or credentials header value, keys lowercased,
/// quotes removed. `None` when the scheme is not Digest.
pub fn parse_params(value: &str) -> Option<HashMap<String, String>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut params = HashMap::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        params.insert(key, val.to_owned());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some(params)
}

/// What the client computes the response over.
#[derive(Debug, Clone)]
pub struct DigestInput<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `auth` or `auth-int`; `None` for the RFC 2069 form without qop.
    pub qop: Option<&'a str>,
    pub nc: &'a str,
    pub cnonce: &'a str,
    pub body: &'a [u8],
}

/// The `response=` value (RFC 7616 §3.4.1-§3.4.3).
pub fn response(input: &DigestInput<'_>) -> String {
    let h = |s: &str| input.algorithm.hash(s.as_bytes());
    let mut ha1 = h(&format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    if input.algorithm.is_session() {
        ha1 = h(&format!("{ha1}:{}:{}", input.nonce, input.cnonce));
    }
    let ha2 = match input.qop {
        Some("auth-int") => h(&format!(
            "{}:{}:{}",
            input.method,
            input.uri,
            input.algorithm.hash(input.body)
        )),
        _ => h(&format!("{}:{}", input.method, input.uri)),
    };
    match input.qop {
        Some(qop) => h(&format!(
            "{ha1}:{}:{}:{}:{qop}:{ha2}",
            input.nonce, input.nc, input.cnonce
        )),
        None => h(&format!("{ha1}:{}:{ha2}", input.nonce)),
    }
}

/// Answers the challenge header value `challenge` (WWW- or Proxy-Authenticate) with a
/// credentials header value. Picks qop `auth` when offered, else `auth-int`, else none.
pub fn answer(
    challenge: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    body: &[u8],
) -> Option<String> {
    let params = parse_params(challenge)?;
    let algorithm = Algorithm::parse(params.get("algorithm").map(String::as_str))?;
    let realm = params.get("realm")?;
    let nonce = params.get("nonce")?;
    let offered: Vec<&str> = params
        .get("qop")
        .map(|q| q.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let qop = ["auth", "auth-int"]
        .into_iter()
        .find(|q| offered.contains(q));
    let cnonce = "0a4f113b";
    let nc = "00000001";
    let response = response(&DigestInput {
        algorithm,
        username,
        realm,
        password,
        method,
        uri,
        nonce,
        qop,
        nc,
        cnonce,
        body,
    });
    let mut value = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}",
        algorithm.token()
    );
    if let Some(qop) = qop {
        let _ = write!(value, ", qop={qop}, nc={nc}, cnonce=\"{cnonce}\"");
    }
    if let Some(opaque) = params.get("opaque") {
        let _ = write!(value, ", opaque=\"{opaque}\"");
    }
    Some(value)
}

/// Why credentials did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestMismatch {
    NotDigest,
    MissingParam(&'static str),
    UnknownAlgorithm(String),
    WrongResponse { expected: String, got: String },
}

/// Checks a credentials header value against `password`, recomputing the response from the
/// header's own parameters (the caller checks realm and nonce against what it issued).
pub fn verify(
    credentials: &str,
    method: &str,
    password: &str,
    body: &[u8],
) -> Result<(), DigestMismatch> {
    let params = parse_params(credentials).ok_or(DigestMismatch::NotDigest)?;
    let get = |k: &'static str| {
        params
            .get(k)
            .map(String::as_str)
            .ok_or(DigestMismatch::MissingParam(k))
    };
    let algorithm_token = params.get("algorithm").map(String::as_str);
    let algorithm = Algorithm::parse(algorithm_token).ok_or_else(|| {
        DigestMismatch::UnknownAlgorithm(algorithm_token.unwrap_or_default().to_owned())
    })?;
    let qop = params.get("qop").map(String::as_str);
    let (nc, cnonce) = match qop {
        Some(_) => (get("nc")?, get("cnonce")?),
        None => ("", ""),
    };
    let expected = response(&DigestInput {
        algorithm,
        username: get("username")?,
        realm: get("realm")?,
        password,
        method,
        uri: get("uri")?,
        nonce: get("nonce")?,
        qop,
        nc,
        cnonce,
        body,
    });
    let got = get("response")?.to_ascii_lowercase();
    if got == expected {
        Ok(())
    } else {
        Err(DigestMismatch::WrongResponse { expected, got })
    }
}
