//! The dialplan as written: serde shapes with defaults, before semantic validation.
//!
//! Every struct denies unknown keys, so a misspelt key is a located error rather than a
//! silently ignored setting. Defaults live in the `Default` impls here and are documented on
//! the validated fields in `model`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{Modulation, OnDiversion, Transport};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDialplan {
    pub trunks: RawTrunks,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub admins: Vec<RawAdmin>,
    #[serde(default)]
    pub signal: RawSignal,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub callback: RawCallback,
    #[serde(default)]
    pub security: RawSecurity,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub media: RawMedia,
    #[serde(default)]
    pub modem: RawModem,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrunks {
    pub user: RawRegisteringTrunk,
    pub admin: RawRegisteringTrunk,
    pub originate: RawOriginateTrunk,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegisteringTrunk {
    pub listen: String,
    pub advertise: Option<String>,
    #[serde(default)]
    pub transport: Transport,
    pub registrar: Option<String>,
    pub outbound_proxy: Option<String>,
    pub aor: String,
    pub auth_username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    #[serde(default = "default_expires_s")]
    pub expires_s: u32,
    #[serde(default = "yes")]
    pub register: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOriginateTrunk {
    pub listen: String,
    pub advertise: Option<String>,
    #[serde(default)]
    pub transport: Transport,
    pub proxy: String,
    pub from: String,
    pub auth_username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    #[serde(default)]
    pub allow_sources: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLimits {
    pub max_message_bytes: u32,
    pub max_headers: u32,
    pub per_source_rate: u32,
    pub per_source_burst: u32,
    pub max_transactions: u32,
    pub max_dialogs: u32,
    pub queue_depth: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8192,
            max_headers: 64,
            per_source_rate: 500,
            per_source_burst: 1000,
            max_transactions: 4096,
            max_dialogs: 256,
            queue_depth: 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// Signed so that `-1` reaches validation and gets a clear range error.
    pub digit: i64,
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub pin: String,
    pub digest: RawDigest,
    pub numbers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDigest {
    pub realm: Option<String>,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSignal {
    pub text: String,
    pub dtmf: String,
    pub window_s: u32,
    pub separate_digit: bool,
}

impl Default for RawSignal {
    fn default() -> Self {
        Self {
            text: "MAINTAIN-{digit}".into(),
            dtmf: "*62468246*{digit}#".into(),
            window_s: 120,
            separate_digit: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoutes {
    #[serde(default = "RawRoute::user_default")]
    pub user: RawRoute,
    #[serde(default = "RawRoute::admin_default")]
    pub admin: RawRoute,
}

impl Default for RawRoutes {
    fn default() -> Self {
        Self {
            user: RawRoute::user_default(),
            admin: RawRoute::admin_default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default = "yes")]
    pub message: bool,
    #[serde(default = "yes")]
    pub call: bool,
    pub otherwise: Option<RawOtherwise>,
}

impl RawRoute {
    fn user_default() -> Self {
        Self {
            message: true,
            call: true,
            otherwise: None,
        }
    }
    fn admin_default() -> Self {
        Self::user_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub(crate) enum RawOtherwise {
    Reject(u16),
    Redirect(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCallback {
    pub delay_ms: u32,
    pub ring_timeout_s: u32,
    pub max_per_admin_per_hour: u32,
    pub on_diversion: OnDiversion,
    pub answered_hold_s: u32,
}

impl Default for RawCallback {
    fn default() -> Self {
        Self {
            delay_ms: 2000,
            ring_timeout_s: 30,
            max_per_admin_per_hour: 3,
            on_diversion: OnDiversion::Abort,
            answered_hold_s: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSecurity {
    pub tries_per_call: u32,
    pub max_failures: u32,
    pub failure_window_s: u32,
    pub lock_s: u32,
    pub per_source_max_failures: u32,
    pub nonce_ttl_s: u32,
    pub realm: String,
    pub state_path: String,
    pub digest_algorithms: Vec<String>,
}

impl Default for RawSecurity {
    fn default() -> Self {
        Self {
            tries_per_call: 3,
            max_failures: 5,
            failure_window_s: 900,
            lock_s: 1800,
            per_source_max_failures: 10,
            nonce_ttl_s: 300,
            realm: "dialback".into(),
            state_path: "state.json".into(),
            digest_algorithms: vec!["SHA-256".into(), "MD5".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAudit {
    pub path: String,
    pub fsync: bool,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            path: "audit.jsonl".into(),
            fsync: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawMedia {
    pub rtp_ports: [u16; 2],
    pub jitter_ms: u32,
    pub rtp_timeout_s: u32,
    pub dtmf_min_tone_ms: u32,
    pub dtmf_min_pause_ms: u32,
    pub first_digit_timeout_s: u32,
    pub inter_digit_timeout_s: u32,
    pub max_digits: u32,
    pub prompts: BTreeMap<String, String>,
}

impl Default for RawMedia {
    fn default() -> Self {
        Self {
            rtp_ports: [20000, 20999],
            jitter_ms: 60,
            rtp_timeout_s: 30,
            dtmf_min_tone_ms: 40,
            dtmf_min_pause_ms: 40,
            first_digit_timeout_s: 10,
            inter_digit_timeout_s: 5,
            max_digits: 32,
            prompts: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawModem {
    pub modulations: Vec<Modulation>,
    pub target: String,
    pub tx_level_dbm0: i32,
    pub idle_s: u32,
    pub max_s: u32,
    pub login_tries: u32,
    pub connect_timeout_s: u32,
}

impl Default for RawModem {
    fn default() -> Self {
        Self {
            modulations: vec![
                Modulation::V22bis,
                Modulation::V22,
                Modulation::V21,
                Modulation::Bell103,
            ],
            target: "console".into(),
            tx_level_dbm0: -12,
            idle_s: 300,
            max_s: 3600,
            login_tries: 3,
            connect_timeout_s: 20,
        }
    }
}

fn default_expires_s() -> u32 {
    300
}

fn yes() -> bool {
    true
}
