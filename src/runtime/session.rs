//! The maintenance session on an answered callback (DESIGN.md steps 6–7, issue 5): the gate
//! is the calling V.22bis modem; once it connects, the built-in console asks the
//! administrator to log in again (the callback leg is never trusted on a bare answer), then
//! serves `status`, `audit`, `help`, `quit`. Session start and end, and failed re-logins, are
//! audited. The task returns when the session is over; the caller then hangs up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config;
use crate::console::{Console, ConsoleConfig, ConsoleEvent};
use crate::gate::audit::{EventCode, Reason};
use crate::gate::pin::verify_pin;
use crate::gate::policy::{AdminId, Policy};
use crate::runtime::audit::AuditLog;
use crate::runtime::callback::record;
use crate::runtime::modem_media::{LineEvent, ModemLine};

/// Bytes handed to the modem per write.
const TX_CHUNK: usize = 64;

/// What the session needs besides the line.
#[derive(Clone)]
pub struct SessionSettings {
    pub modem: config::Modem,
    pub policy: Arc<Policy>,
    pub audit: Option<AuditLog>,
}

/// Run the console over `line` for `admin` until it ends; returns why.
pub async fn run(mut line: ModemLine, admin: AdminId, s: SessionSettings) -> Reason {
    // Wait for CONNECT.
    let within = Duration::from_secs(u64::from(s.modem.connect_timeout_s));
    let connected = tokio::time::timeout(within, async {
        while let Some(ev) = line.events.recv().await {
            match ev {
                LineEvent::Connected { rate_bps } => return Ok(rate_bps),
                LineEvent::CarrierLost => return Err(Reason::ModemTrainingFailed),
                LineEvent::RtpTimeout => return Err(Reason::RtpTimeout),
                LineEvent::Data(_) => {}
            }
        }
        Err(Reason::ModemTrainingFailed)
    })
    .await
    .unwrap_or(Err(Reason::ModemTrainingFailed));
    let rate = match connected {
        Ok(rate) => rate,
        Err(reason) => {
            warn!(admin = %admin.as_str(), reason = ?reason, "modem did not train");
            return reason;
        }
    };
    info!(admin = %admin.as_str(), rate, "CONNECT {rate}");
    let banner = format!("dialback maintenance console (CONNECT {rate})");
    let mut console = Console::new(
        ConsoleConfig::from_modem(&s.modem, admin.clone(), banner),
        Instant::now(),
    );
    let mut end = Reason::Hangup;
    loop {
        // Output to the line, as fast as the modem takes it (the channel is bounded).
        loop {
            let out = console.poll_tx(TX_CHUNK);
            if out.is_empty() {
                break;
            }
            if line.tx.send(out).await.is_err() {
                return Reason::CarrierLost;
            }
        }
        let mut handled = false;
        while let Some(ev) = console.poll_event() {
            handled = true;
            match ev {
                ConsoleEvent::VerifyLogin { id, pin } => {
                    let policy = s.policy.clone();
                    let verified =
                        tokio::task::spawn_blocking(move || verify_pin(&policy, &id, &pin))
                            .await
                            .unwrap_or(None);
                    let _ = console.login_result(Instant::now(), verified);
                }
                ConsoleEvent::StatusRequest => {
                    let text = format!(
                        "session: admin {} over {} {rate} bit/s\r\ncallback trunk: originate",
                        admin.as_str(),
                        modulation_name(&s.modem, rate)
                    );
                    let _ = console.provide_status(&text);
                }
                ConsoleEvent::AuditRequest { last } => {
                    let lines = recent_audit(&s.audit, last).await;
                    let _ = console.provide_audit(lines);
                }
                ConsoleEvent::LoginFailed { .. } => {
                    record(
                        &s.audit,
                        EventCode::AuthFail,
                        &admin,
                        Some(Reason::ReauthFailed),
                    )
                    .await;
                }
                ConsoleEvent::SessionStarted { .. } => {
                    record(&s.audit, EventCode::SessionStart, &admin, None).await;
                }
                ConsoleEvent::Hangup { reason } | ConsoleEvent::Ended { reason } => {
                    end = reason;
                    // Let the last bytes leave before the caller hangs up.
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    return end;
                }
            }
        }
        if handled {
            // Answers to events may have queued output: send it before waiting.
            continue;
        }
        let wake = console
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = line.events.recv() => match ev {
                Some(LineEvent::Data(bytes)) => console.push_rx(Instant::now(), &bytes),
                Some(LineEvent::CarrierLost) | None => {
                    console.end(Reason::CarrierLost);
                    end = Reason::CarrierLost;
                }
                Some(LineEvent::RtpTimeout) => {
                    console.end(Reason::RtpTimeout);
                    end = Reason::RtpTimeout;
                }
                Some(LineEvent::Connected { .. }) => {}
            },
            _ = tokio::time::sleep_until(wake) => console.handle_timeout(Instant::now()),
        }
        if console.is_closed() {
            return end;
        }
    }
}

/// The modulation in use, as the ITU/Bell name.
fn modulation_name(m: &config::Modem, rate: u32) -> &'static str {
    match (m.modulations.first(), rate) {
        (Some(config::Modulation::V21), _) => "V.21",
        (Some(config::Modulation::Bell103), _) => "Bell 103",
        (_, 2400) => "V.22bis",
        _ => "V.22",
    }
}

/// The last `n` audit lines, for the console's `audit` command.
async fn recent_audit(audit: &Option<AuditLog>, n: usize) -> Vec<String> {
    let Some(log) = audit else { return Vec::new() };
    let path = log.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).collect()
    })
    .await
    .unwrap_or_default()
}
