//! Small syntax checks for the SIP and tel URIs a dialplan names.
//!
//! This is deliberately not a SIP parser: it checks the shape an operator can get wrong
//! (scheme, non-empty user and host parts, port range, no whitespace or control characters)
//! after RFC 3261 §19.1.1 (`sip:`/`sips:`) and RFC 3966 §3 (`tel:`). The validated strings
//! are kept verbatim; the `sip/` facade parses them properly when it uses them.

use std::fmt;

use thiserror::Error;

/// Why a string is not an acceptable URI.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UriError {
    #[error("must start with {expected}")]
    Scheme { expected: &'static str },
    #[error("contains whitespace or a control character at byte {at}")]
    ForbiddenChar { at: usize },
    #[error("user part before '@' is empty")]
    EmptyUser,
    #[error("host part is empty")]
    EmptyHost,
    #[error("host {host:?} contains characters not allowed in a host name or IP literal")]
    BadHost { host: String },
    #[error("port {port:?} is not a number in 1..=65535")]
    BadPort { port: String },
    #[error("telephone number {number:?} must contain digits and only 0-9 A-F * # + - . ( )")]
    BadTelNumber { number: String },
}

/// A `sip:` or `sips:` URI whose syntax has been checked (RFC 3261 §19.1.1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SipUri(String);

/// A `tel:` URI whose syntax has been checked (RFC 3966 §3).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TelUri(String);

/// A callback number: where the gate may call an administrator back.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum CallbackNumber {
    Sip(SipUri),
    Tel(TelUri),
}

impl SipUri {
    /// Checks `s` and wraps it.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        check_chars(s)?;
        let rest = strip_scheme(s, "sips:")
            .or_else(|| strip_scheme(s, "sip:"))
            .ok_or(UriError::Scheme {
                expected: "sip: or sips:",
            })?;
        split_host_port(rest)?;
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the scheme is `sips:` (RFC 3261 §19.1: TLS on every hop).
    pub fn is_secure(&self) -> bool {
        strip_scheme(&self.0, "sips:").is_some()
    }

    /// Host (IPv6 literals keep their brackets) and explicit port, if any.
    pub fn host_port(&self) -> (&str, Option<u16>) {
        let rest = strip_scheme(&self.0, "sips:")
            .or_else(|| strip_scheme(&self.0, "sip:"))
            .unwrap_or(&self.0);
        // The string was checked in `parse`, so this cannot fail; fall back to the raw string.
        split_host_port(rest).unwrap_or((rest, None))
    }
}

impl TelUri {
    /// Checks `s` and wraps it.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        check_chars(s)?;
        let rest = strip_scheme(s, "tel:").ok_or(UriError::Scheme { expected: "tel:" })?;
        // RFC 3966 §3: telephone-subscriber = number followed by ;parameters.
        let number = rest.split(';').next().unwrap_or("");
        let allowed = |c: char| c.is_ascii_digit() || "ABCDEFabcdef*#+-.()".contains(c);
        if !number.chars().any(|c| c.is_ascii_digit()) || !number.chars().all(allowed) {
            return Err(UriError::BadTelNumber {
                number: number.to_owned(),
            });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CallbackNumber {
    /// Accepts a `sip:`, `sips:` or `tel:` URI.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if strip_scheme(s, "tel:").is_some() {
            TelUri::parse(s).map(Self::Tel)
        } else if strip_scheme(s, "sip:").is_some() || strip_scheme(s, "sips:").is_some() {
            SipUri::parse(s).map(Self::Sip)
        } else {
            Err(UriError::Scheme {
                expected: "sip:, sips: or tel:",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Sip(u) => u.as_str(),
            Self::Tel(u) => u.as_str(),
        }
    }
}

macro_rules! show_verbatim {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.as_str())
            }
        }
    )*};
}
show_verbatim!(SipUri, TelUri, CallbackNumber);

/// RFC 3261 §19.1.1 and RFC 3966: schemes compare case-insensitively.
fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let head = s.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| s.get(scheme.len()..))
        .flatten()
}

fn check_chars(s: &str) -> Result<(), UriError> {
    match s
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        Some((at, _)) => Err(UriError::ForbiddenChar { at }),
        None => Ok(()),
    }
}

/// Splits `[user[:password]@]host[:port][;params][?headers]` into host and port.
fn split_host_port(rest: &str) -> Result<(&str, Option<u16>), UriError> {
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    if let Some(userinfo) = userinfo {
        let user = userinfo.split(':').next().unwrap_or("");
        if user.is_empty() {
            return Err(UriError::EmptyUser);
        }
    }
    let hostport = hostpart.split([';', '?']).next().unwrap_or("");
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']').ok_or_else(|| UriError::BadHost {
            host: hostport.to_owned(),
        })?;
        let addr = &v6[..close];
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UriError::BadHost {
                host: hostport.to_owned(),
            });
        }
        // Keep the brackets: `[::1]` is the host as written in the URI.
        let host_end = close + 2;
        let after = &hostport[host_end..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(UriError::BadHost {
                    host: hostport.to_owned(),
                })
            }
        };
        (&hostport[..host_end], port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UriError::EmptyHost);
    }
    let host_ok = host.starts_with('[')
        || host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !host_ok {
        return Err(UriError::BadHost {
            host: host.to_owned(),
        });
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(UriError::BadPort { port: p.to_owned() }),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_with_user_host_port_and_params_are_accepted() {
        for ok in [
            "sip:1001@127.0.0.1",
            "sip:127.0.0.1:5060",
            "SIP:alice:pw@example.com;transport=tcp?subject=x",
            "sips:+819012345678@[::1]:5061",
            "sip:gate-user@pbx.example.net",
        ] {
            assert!(SipUri::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_sip_uris_say_what_is_wrong() {
        assert_eq!(
            SipUri::parse("tel:+81"),
            Err(UriError::Scheme {
                expected: "sip: or sips:"
            })
        );
        assert_eq!(SipUri::parse("sip:@host"), Err(UriError::EmptyUser));
        assert_eq!(SipUri::parse("sip:1001@"), Err(UriError::EmptyHost));
        assert_eq!(SipUri::parse("sip:"), Err(UriError::EmptyHost));
        assert_eq!(
            SipUri::parse("sip:a b@host"),
            Err(UriError::ForbiddenChar { at: 5 })
        );
        assert!(matches!(
            SipUri::parse("sip:x@host:99999"),
            Err(UriError::BadPort { .. })
        ));
        assert!(matches!(
            SipUri::parse("sip:x@ho/st"),
            Err(UriError::BadHost { .. })
        ));
        assert!(matches!(
            SipUri::parse("sip:x@[::1"),
            Err(UriError::BadHost { .. })
        ));
    }

    #[test]
    fn host_port_splits_ipv4_ipv6_and_names() {
        let u = SipUri::parse("sip:127.0.0.1:5060").unwrap();
        assert_eq!(u.host_port(), ("127.0.0.1", Some(5060)));
        let u = SipUri::parse("sip:x@[::1]:5070;lr").unwrap();
        assert_eq!(u.host_port(), ("[::1]", Some(5070)));
        let u = SipUri::parse("sips:pbx.example").unwrap();
        assert_eq!(u.host_port(), ("pbx.example", None));
        assert!(u.is_secure());
    }

    #[test]
    fn tel_uris_need_digits() {
        assert!(TelUri::parse("tel:+81-90-1234-5678").is_ok());
        assert!(TelUri::parse("tel:7042;phone-context=example.com").is_ok());
        assert!(matches!(
            TelUri::parse("tel:"),
            Err(UriError::BadTelNumber { .. })
        ));
        assert!(matches!(
            TelUri::parse("tel:+81x90"),
            Err(UriError::BadTelNumber { .. })
        ));
    }

    #[test]
    fn callback_numbers_accept_sip_and_tel_only() {
        assert!(matches!(
            CallbackNumber::parse("tel:+819012345678"),
            Ok(CallbackNumber::Tel(_))
        ));
        assert!(matches!(
            CallbackNumber::parse("sip:1001@127.0.0.1"),
            Ok(CallbackNumber::Sip(_))
        ));
        assert!(matches!(
            CallbackNumber::parse("+819012345678"),
            Err(UriError::Scheme { .. })
        ));
        assert!(matches!(
            CallbackNumber::parse("mailto:a@b"),
            Err(UriError::Scheme { .. })
        ));
    }
}
