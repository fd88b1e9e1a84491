//! From a validated dialplan to the trunk tasks' settings: resolve registrar and proxy hosts
//! (the one DNS step, done here at the edge), pick the registration destination, and fill in
//! the endpoint caps.

use std::net::{IpAddr, SocketAddr};

use std::time::Duration;

use crate::config::{self, Dialplan, RegisteringTrunk, SipUri, Transport};
use crate::runtime::callback::CallbackSettings;
use crate::runtime::prompts::{PromptSet, PromptSetError};
use crate::runtime::{InboundSpec, TrunkSpec};
use crate::sip::call::OnDiversion;
use crate::sip::endpoint::{AllowRule, EndpointConfig, TrunkKind};
use crate::sip::message::Limits;
use crate::sip::register::RegistrationConfig;
use crate::sip::trunk::TrunkRegistration;

/// Most concurrent TCP connections per trunk.
const MAX_TCP_CONNECTIONS: usize = 128;
/// Most per-source rate-limit buckets per trunk.
const MAX_SOURCES: usize = 4096;

/// Why the dialplan cannot be turned into running trunks.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot resolve {what} {uri}: {reason}")]
    Resolve {
        what: &'static str,
        uri: String,
        reason: String,
    },
    #[error("the {trunk} trunk registers but has no registrar")]
    NoRegistrar { trunk: &'static str },
    #[error("cannot load the prompts: {0}")]
    Prompts(#[from] PromptSetError),
}

/// The `User-Agent` / `Server` value: product and version, nothing else.
pub fn user_agent() -> String {
    format!("dialback/{}", env!("CARGO_PKG_VERSION"))
}

/// Build the three trunk specs.
pub async fn trunk_specs(d: &Dialplan) -> Result<Vec<TrunkSpec>, PlanError> {
    let limits = Limits {
        max_message_bytes: d.limits.max_message_bytes as usize,
        max_headers: d.limits.max_headers as usize,
    };
    let seed = rand::random::<u64>();
    let endpoint = |kind: TrunkKind, local: SocketAddr, n: u64| EndpointConfig {
        kind,
        local,
        limits,
        per_source_rate: d.limits.per_source_rate,
        per_source_burst: d.limits.per_source_burst,
        max_sources: MAX_SOURCES,
        max_transactions: d.limits.max_transactions as usize,
        queue_depth: d.limits.queue_depth as usize,
        allow_sources: None,
        user_agent: user_agent(),
        rng_seed: seed.wrapping_add(n),
    };
    let prompts = std::sync::Arc::new(PromptSet::load(&d.media.prompts)?);
    let mut specs = Vec::new();
    for (kind, t, n) in [
        (TrunkKind::User, &d.trunks.user, 1),
        (TrunkKind::Admin, &d.trunks.admin, 2),
    ] {
        let registration = registration(kind, t).await?;
        specs.push(TrunkSpec {
            endpoint: endpoint(kind, t.advertise, n),
            listen: t.listen,
            tcp: true,
            max_tcp_connections: MAX_TCP_CONNECTIONS,
            registration,
            register_tcp: t.transport == Transport::Tcp,
            callbacks: None,
            inbound: Some(inbound_spec(d, kind, prompts.clone())),
        });
    }
    let o = &d.trunks.originate;
    let mut ep = endpoint(TrunkKind::Originate, o.advertise, 3);
    ep.allow_sources = Some(
        o.allow_sources
            .iter()
            .map(|a| AllowRule::Addr(*a))
            .collect(),
    );
    specs.push(TrunkSpec {
        endpoint: ep,
        listen: o.listen,
        tcp: true,
        max_tcp_connections: 8,
        registration: None,
        register_tcp: false,
        callbacks: Some(callback_settings(d).await?),
        inbound: None,
    });
    Ok(specs)
}

async fn registration(
    kind: TrunkKind,
    t: &RegisteringTrunk,
) -> Result<Option<TrunkRegistration>, PlanError> {
    if !t.register {
        return Ok(None);
    }
    let registrar = t.registrar.as_ref().ok_or(PlanError::NoRegistrar {
        trunk: kind.as_str(),
    })?;
    let via = t.outbound_proxy.as_ref().unwrap_or(registrar);
    let destination = resolve(via, "registrar").await?;
    // RFC 3261 §10.2: the Request-URI names the registrar's domain, without user part.
    let (host, port) = registrar.host_port();
    let registrar_uri = match port {
        Some(p) => format!("{}:{host}:{p}", scheme(registrar)),
        None => format!("{}:{host}", scheme(registrar)),
    };
    let user = t
        .auth_username
        .clone()
        .unwrap_or_else(|| user_part(t.aor.as_str()).to_string());
    // RFC 3263 §4.1: the transport parameter tells the registrar how to reach us back.
    let transport = match t.transport {
        Transport::Tcp => ";transport=tcp",
        Transport::Udp => "",
    };
    let contact = format!(
        "sip:{}@{}{transport}",
        user_part(t.aor.as_str()),
        t.advertise
    );
    Ok(Some(TrunkRegistration {
        config: RegistrationConfig {
            registrar_uri,
            aor: t.aor.as_str().to_string(),
            contact,
            auth_username: user,
            password: t
                .password
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            expires_s: t.expires_s,
        },
        destination,
    }))
}

fn scheme(uri: &SipUri) -> &'static str {
    if uri.is_secure() {
        "sips"
    } else {
        "sip"
    }
}

/// `user` of `sip:user@host`, or empty.
fn user_part(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map_or("", |(u, _)| u)
}

/// Resolve a SIP URI's host and port (default 5060, 5061 for sips) to one socket address.
/// No NAPTR/SRV (RFC 3263): operators name the PBX by address or A/AAAA name.
pub async fn resolve(uri: &SipUri, what: &'static str) -> Result<SocketAddr, PlanError> {
    let (host, port) = uri.host_port();
    let port = port.unwrap_or(if uri.is_secure() { 5061 } else { 5060 });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let err = |reason: String| PlanError::Resolve {
        what,
        uri: uri.as_str().to_string(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| err(e.to_string()))?;
    addrs.next().ok_or_else(|| err("no address".to_string()))
}

/// The originate trunk's callback settings from the dialplan.
async fn callback_settings(d: &Dialplan) -> Result<CallbackSettings, PlanError> {
    let o = &d.trunks.originate;
    let proxy = resolve(&o.proxy, "originate proxy").await?;
    let user = o
        .auth_username
        .clone()
        .unwrap_or_else(|| user_part(o.from.as_str()).to_string());
    Ok(CallbackSettings {
        proxy,
        from_uri: o.from.as_str().to_string(),
        contact_uri: format!("sip:{}@{}", user_part(o.from.as_str()), o.advertise),
        auth_username: user,
        password: o
            .password
            .as_ref()
            .map(|s| s.expose().to_string())
            .unwrap_or_default(),
        delay: Duration::from_millis(u64::from(d.callback.delay_ms)),
        ring_timeout: Duration::from_secs(u64::from(d.callback.ring_timeout_s)),
        on_diversion: match d.callback.on_diversion {
            config::OnDiversion::Abort => OnDiversion::Abort,
            config::OnDiversion::Continue => OnDiversion::Flag,
        },
        answered_hold: Duration::from_secs(u64::from(d.callback.answered_hold_s)),
        rtp_ip: o.listen.ip(),
        sdp_ip: o.advertise.ip(),
        rtp_ports: d.media.rtp_ports,
        session: None,
        jitter: Duration::from_millis(u64::from(d.media.jitter_ms)),
        rtp_timeout: Duration::from_secs(u64::from(d.media.rtp_timeout_s)),
        modem: d.modem.clone(),
    })
}

/// How a user or admin trunk takes calls.
fn inbound_spec(d: &Dialplan, kind: TrunkKind, prompts: std::sync::Arc<PromptSet>) -> InboundSpec {
    let route = match kind {
        TrunkKind::User => &d.routes.user,
        _ => &d.routes.admin,
    };
    InboundSpec {
        allow_calls: route.call,
        rtp_ports: d.media.rtp_ports,
        inband: crate::media::inband::InbandConfig {
            min_tone_ms: d.media.dtmf_min_tone_ms,
            min_pause_ms: d.media.dtmf_min_pause_ms,
            ..crate::media::inband::InbandConfig::default()
        },
        first_digit_timeout: Duration::from_secs(u64::from(d.media.first_digit_timeout_s)),
        inter_digit_timeout: Duration::from_secs(u64::from(d.media.inter_digit_timeout_s)),
        max_digits: usize::try_from(d.media.max_digits).unwrap_or(usize::MAX),
        rtp_timeout: Duration::from_secs(u64::from(d.media.rtp_timeout_s)),
        prompts,
        otherwise: route.otherwise.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialplan(text: &str) -> Dialplan {
        crate::config::parse("t.json", text, &|_| Some("pw".into()), &|_| {
            Err(std::io::ErrorKind::NotFound.into())
        })
        .expect("test dialplan parses")
        .dialplan
    }

    #[tokio::test]
    async fn contacts_via_and_sdp_use_the_advertised_address_and_sockets_the_listen_one() {
        let d = dialplan(
            r#"{ "trunks": {
              "user": { "listen": "127.0.0.1:5070", "advertise": "127.0.0.2:5070",
                        "registrar": "sip:127.0.0.1:5060", "aor": "sip:gate-user@127.0.0.1",
                        "auth_username": "gate-user", "password_env": "P" },
              "admin": { "listen": "127.0.0.1:5071", "registrar": "sip:127.0.0.1:5060",
                         "aor": "sip:gate-admin@127.0.0.1" },
              "originate": { "listen": "127.0.0.1:5072", "advertise": "127.0.0.3:6072",
                             "proxy": "sip:127.0.0.1:5060", "from": "sip:gate-out@127.0.0.1" } } }"#,
        );
        let specs = trunk_specs(&d).await.expect("specs");
        let user = &specs[0];
        assert_eq!(user.listen.to_string(), "127.0.0.1:5070");
        assert_eq!(user.endpoint.local.to_string(), "127.0.0.2:5070");
        let reg = user.registration.as_ref().expect("user registers");
        assert_eq!(reg.config.contact, "sip:gate-user@127.0.0.2:5070");
        let admin = &specs[1];
        assert_eq!(admin.endpoint.local, admin.listen);
        let out = &specs[2];
        assert_eq!(out.listen.to_string(), "127.0.0.1:5072");
        assert_eq!(out.endpoint.local.to_string(), "127.0.0.3:6072");
        let cb = out.callbacks.as_ref().expect("originate places callbacks");
        assert_eq!(cb.contact_uri, "sip:gate-out@127.0.0.3:6072");
        assert_eq!(cb.rtp_ip.to_string(), "127.0.0.1");
        assert_eq!(cb.sdp_ip.to_string(), "127.0.0.3");
    }
}
