//! The dialplan: model, loading and validation (DESIGN.md "Dialplan"; issue 4).
//!
//! One JSON file describes the three trunks, the administrators, the start signal, routes,
//! callback, security, audit, media and modem settings; `dialplans/dialplan.schema.json`
//! documents the format and `dialplans/example.json` is a complete example.
//!
//! Layers:
//! - [`load`] is the only function that touches the outside world: it reads the file, the
//!   environment, password files and prompt WAV headers, then hands over to the pure core.
//! - [`parse`] / [`parse_with_prompts`] take text and injected look-ups. JSON syntax, type and
//!   unknown-key errors are reported with line and column (serde_json) and JSON path
//!   (serde_path_to_error); they stop parsing. Semantic errors are all collected, each with its
//!   JSON path, so `dialback check` reports everything at once.
//! - The result is a [`Dialplan`] of validated types (`SipUri`, `AdminDigit`, `SocketAddr`,
//!   [`Secret`]...): an invalid dialplan cannot be constructed.
//!
//! Secrets (trunk passwords, PIN hashes, HA1 values) are held in [`Secret`], which prints as
//! `REDACTED` (STYLE.md "Logging"). This module must not depend on any other module's types.

mod error;
mod model;
mod raw;
mod uri;
mod validate;
pub mod wav;

use std::fmt;
use std::io;
use std::path::Path;

use serde_json::error::Category;

pub use error::{ConfigError, ConfigErrors, ConfigWarning, Problem};
pub use model::*;
pub use uri::{CallbackNumber, SipUri, TelUri, UriError};

use raw::RawDialplan;
use validate::Validator;

/// A dialplan that passed validation, with the warnings it produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub dialplan: Dialplan,
    pub warnings: Vec<ConfigWarning>,
}

/// A secret value (password, PIN hash, digest HA1) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("REDACTED")
    }
}

/// Reads and validates the dialplan at `path`: environment variables for `password_env`,
/// password files and prompt WAV headers (relative paths against the file's directory).
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigErrors::one(&source_name, ConfigError::Read { source }))?;
    let env = |name: &str| std::env::var(name).ok();
    let read_file = |p: &Path| std::fs::read_to_string(p);
    let read_bytes = |p: &Path| std::fs::read(p);
    parse_with_prompts(&source_name, &text, &env, &read_file, &read_bytes)
}

/// Parses and validates dialplan `text`; `source_name` names it in errors and its directory
/// anchors relative paths. Prompt files are not opened (their paths are only resolved); use
/// [`parse_with_prompts`] to check them too.
pub fn parse(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Loaded, ConfigErrors> {
    parse_inner(source_name, text, env, read_file, None)
}

/// As [`parse`], and also checks that every prompt is an 8 kHz mono PCM16 or G.711 WAV
/// (see [`wav::inspect`]), reading its bytes through `read_bytes`.
pub fn parse_with_prompts(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> io::Result<String>,
    read_bytes: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<Loaded, ConfigErrors> {
    parse_inner(source_name, text, env, read_file, Some(read_bytes))
}

fn parse_inner(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> io::Result<String>,
    read_bytes: Option<validate::ReadBytes<'_>>,
) -> Result<Loaded, ConfigErrors> {
    let raw = deserialize(text).map_err(|e| ConfigErrors::one(source_name, e))?;
    let base_dir = Path::new(source_name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut v = Validator {
        base_dir,
        env,
        read_file,
        read_bytes,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match v.dialplan(raw) {
        Some(dialplan) if v.errors.is_empty() => Ok(Loaded {
            dialplan,
            warnings: v.warnings,
        }),
        _ => Err(ConfigErrors {
            source_name: source_name.to_owned(),
            errors: v.errors,
        }),
    }
}

/// Keys whose values must never appear in an error message.
const SECRET_KEYS: &[&str] = &["password", "pin", "ha1_md5", "ha1_sha256"];

fn deserialize(text: &str) -> Result<RawDialplan, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = json_path(&e.path().to_string());
        located(e.into_inner(), Some(path))
    })?;
    // Trailing characters after the top-level object are a syntax error.
    de.end().map_err(|e| located(e, None))?;
    Ok(raw)
}

fn located(e: serde_json::Error, path: Option<String>) -> ConfigError {
    let (line, column) = (e.line(), e.column());
    let holds_secret = path.as_deref().is_some_and(|p| {
        SECRET_KEYS
            .iter()
            .any(|k| p.strip_suffix(k).is_some_and(|head| head.ends_with('.')))
    });
    // serde quotes the offending value ("invalid type: integer `2468`"); never echo a secret.
    let message = if holds_secret {
        "wrong type (value not shown: this key holds a secret)".to_owned()
    } else {
        bare_message(&e)
    };
    match (e.classify(), path) {
        (Category::Data, Some(path)) => ConfigError::Shape {
            line,
            column,
            path,
            message,
        },
        _ => ConfigError::Syntax {
            line,
            column,
            message,
        },
    }
}

/// serde_json appends " at line L column C" to its messages; we print the location ourselves.
fn bare_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix).unwrap_or(&full).to_owned()
}

/// serde_path_to_error prints `a.b[0].c` (or `.` at the root); we print `$.a.b[0].c`.
fn json_path(p: &str) -> String {
    if p == "." || p.is_empty() {
        "$".to_owned()
    } else {
        format!("$.{p}")
    }
}

#[cfg(test)]
mod tests;
