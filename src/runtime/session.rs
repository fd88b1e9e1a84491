//! The maintenance session on an answered callback (DESIGN.md steps 6–7, issue 5 point 5).
//!
//! The gate is the calling modem: the link tries the dialplan's `modem.modulations` in order
//! ([`crate::modem::link`]), the whole start-up bounded by `modem.connect_timeout_s` from
//! answer, and `modem.connect` is audited with the modulation that connected. Then the
//! administrator logs in again over the modem (the callback leg is never trusted on a bare
//! answer, whatever the target), `session.start` is audited, and the data goes to the target:
//!
//! - `console`: the built-in console serves `status`, `audit`, `help`, `quit`;
//! - `tcp:HOST:PORT`: a TCP connection to the target and [`crate::console::bridge`] pumping
//!   bytes both ways with bounded buffers (a fast target cannot flood a 300 bit/s line, a
//!   slow target cannot make the line side buffer without bound), the idle and total limits
//!   of the dialplan (the total counted from CONNECT), an orderly end (the target closes or a
//!   limit hits: what is owed to the line is sent, then the call is hung up) and carrier loss
//!   ending it at once.
//!
//! The task returns the reason the session ended; the callback audits `session.end` with it
//! and hangs up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{self, ModemTarget};
use crate::console::bridge::{Bridge, BridgeConfig, BridgeEvent};
use crate::console::{Console, ConsoleConfig, ConsoleEvent, DRAIN_MAX};
use crate::gate::audit::{EventCode, Reason};
use crate::gate::pin::verify_pin;
use crate::gate::policy::{AdminId, Policy};
use crate::modem::link::Modulation;
use crate::runtime::audit::AuditLog;
use crate::runtime::callback::record;
use crate::runtime::modem_media::{LineEvent, ModemLine};

/// Bytes handed to the modem per write.
const TX_CHUNK: usize = 64;
/// Bytes read from the TCP target at a time (never more than the bridge has room for).
const TCP_READ: usize = 512;
/// Chunks queued for the TCP writer task.
const TCP_WRITE_QUEUE: usize = 4;
/// Bound on connecting to the `tcp:` target (name resolution included).
pub const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session needs besides the line.
#[derive(Clone)]
pub struct SessionSettings {
    pub modem: config::Modem,
    pub policy: Arc<Policy>,
    pub audit: Option<AuditLog>,
}

/// The dialplan's modulations as the link's.
pub fn modulations(m: &config::Modem) -> Vec<Modulation> {
    m.modulations
        .iter()
        .map(|m| match m {
            config::Modulation::V22bis => Modulation::V22bis,
            config::Modulation::V22 => Modulation::V22,
            config::Modulation::V21 => Modulation::V21,
            config::Modulation::Bell103 => Modulation::Bell103,
        })
        .collect()
}

/// Run the session over `line` for `admin` until it ends; returns why.
pub async fn run(mut line: ModemLine, admin: AdminId, s: SessionSettings) -> Reason {
    let within = Duration::from_secs(u64::from(s.modem.connect_timeout_s));
    let (rate, modulation) = match await_connect(&mut line, within).await {
        Ok(connected) => connected,
        Err(reason) => {
            warn!(admin = %admin.as_str(), reason = ?reason, "modem did not train");
            return reason;
        }
    };
    let connected_at = Instant::now();
    info!(admin = %admin.as_str(), rate, modulation = modulation.name(), "CONNECT {rate}");
    record(
        &s.audit,
        EventCode::ModemConnect,
        &admin,
        Some(audit_reason(modulation)),
    )
    .await;
    let banner = format!("dialback maintenance console (CONNECT {rate})");
    let cfg = ConsoleConfig::from_modem(&s.modem, admin.clone(), banner);
    match s.modem.target.clone() {
        ModemTarget::Console => {
            let mut console = Console::new(cfg, connected_at);
            match drive_console(&mut line, &mut console, &admin, &s, rate, modulation).await {
                Driven::Ended(r) => r,
                // A full console never hands over.
                Driven::HandedOver => Reason::Hangup,
            }
        }
        ModemTarget::Tcp { host, port } => {
            let mut console = Console::login_only(cfg, connected_at);
            match drive_console(&mut line, &mut console, &admin, &s, rate, modulation).await {
                Driven::Ended(r) => r,
                Driven::HandedOver => {
                    let max = Duration::from_secs(u64::from(s.modem.max_s))
                        .saturating_sub(connected_at.elapsed());
                    let limits = (Duration::from_secs(u64::from(s.modem.idle_s)), max);
                    bridge_tcp(&mut line, &admin, &host, port, limits).await
                }
            }
        }
    }
}

/// Wait for CONNECT within `within`; the rate and the modulation that connected, or why not
/// (no training, or no RTP for `media.rtp_timeout_s`).
async fn await_connect(
    line: &mut ModemLine,
    within: Duration,
) -> Result<(u32, Modulation), Reason> {
    tokio::time::timeout(within, async {
        while let Some(ev) = line.events.recv().await {
            match ev {
                LineEvent::Connected { rate_bps } => return Ok((rate_bps, line.modulation())),
                LineEvent::CarrierLost => return Err(Reason::ModemTrainingFailed),
                LineEvent::RtpTimeout => return Err(Reason::RtpTimeout),
                LineEvent::Data(_) => {}
            }
        }
        Err(Reason::ModemTrainingFailed)
    })
    .await
    .unwrap_or(Err(Reason::ModemTrainingFailed))
}

fn audit_reason(m: Modulation) -> Reason {
    match m {
        Modulation::V22bis => Reason::V22bis,
        Modulation::V22 => Reason::V22,
        Modulation::V21 => Reason::V21,
        Modulation::Bell103 => Reason::Bell103,
    }
}

/// How a console run ended.
enum Driven {
    /// The session is over (hang up) for this reason.
    Ended(Reason),
    /// A login-only console: the administrator logged in and the line is the target's now.
    HandedOver,
}

/// Run `console` on the line until it closes, or (login-only) hands the line over.
async fn drive_console(
    line: &mut ModemLine,
    console: &mut Console,
    admin: &AdminId,
    s: &SessionSettings,
    rate: u32,
    modulation: Modulation,
) -> Driven {
    let mut end = Reason::Hangup;
    loop {
        // Output to the line, as fast as the modem takes it (the channel is bounded).
        if !flush_console(console, line).await {
            return Driven::Ended(Reason::CarrierLost);
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
                        modulation.name()
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
                        admin,
                        Some(Reason::ReauthFailed),
                    )
                    .await;
                }
                ConsoleEvent::SessionStarted { .. } => {
                    record(&s.audit, EventCode::SessionStart, admin, None).await;
                }
                ConsoleEvent::Hangup { reason } | ConsoleEvent::Ended { reason } => {
                    // Let the last bytes leave before the caller hangs up (nobody listens
                    // once the carrier is gone).
                    if reason != Reason::CarrierLost {
                        // Output the console queued before it ended (a `status` typed
                        // ahead of `quit`) goes to the line first.
                        if flush_console(console, line).await {
                            line.drain(DRAIN_MAX).await;
                        }
                    }
                    return Driven::Ended(reason);
                }
            }
        }
        if handled {
            // Answers to events may have queued output: send it before waiting.
            continue;
        }
        if console.is_handed_over() {
            return Driven::HandedOver;
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
            return Driven::Ended(end);
        }
    }
}

/// Hands everything the console has queued to the line; false when the line is gone.
async fn flush_console(console: &mut Console, line: &ModemLine) -> bool {
    loop {
        let out = console.poll_tx(TX_CHUNK);
        if out.is_empty() {
            return true;
        }
        if line.tx.send(out).await.is_err() {
            return false;
        }
    }
}

/// Connect to the `tcp:` target and pump bytes until the session ends; returns why.
async fn bridge_tcp(
    line: &mut ModemLine,
    admin: &AdminId,
    host: &str,
    port: u16,
    (idle, max): (Duration, Duration),
) -> Reason {
    let stream =
        match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                warn!(admin = %admin.as_str(), %host, port, %error, "tcp target unreachable");
                let _ = line.tx.send(b"target unreachable\r\n".to_vec()).await;
                line.drain(DRAIN_MAX).await;
                return Reason::TargetUnreachable;
            }
        };
    let _ = stream.set_nodelay(true);
    info!(admin = %admin.as_str(), %host, port, "bridging the modem to the tcp target");
    let (mut rd, mut wr) = stream.into_split();
    // The writer runs on its own so a slow target stalls only its bounded queue.
    let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(TCP_WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(chunk) = wrx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut wtx = Some(wtx);
    let cfg = BridgeConfig::for_line(idle, max);
    let to_line_cap = cfg.to_line_cap;
    let mut bridge = Bridge::new(cfg, Instant::now());
    // Bytes from the line the bridge had no room for yet (kept, in order).
    let mut from_line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; TCP_READ];
    let mut reading = true;
    let mut writer_gone = false;
    let mut end = Reason::Hangup;
    loop {
        if !from_line.is_empty() {
            let n = bridge.push_from_line(Instant::now(), &from_line);
            from_line.drain(..n);
        }
        let mut hang_up = false;
        while let Some(ev) = bridge.poll_event() {
            match ev {
                BridgeEvent::CloseTarget => {
                    // Dropping the sender ends the writer, which shuts the socket down.
                    wtx = None;
                    reading = false;
                }
                BridgeEvent::Hangup { reason } => {
                    end = reason;
                    hang_up = true;
                }
                BridgeEvent::Ended { reason } => end = reason,
            }
        }
        if hang_up || bridge.is_closed() {
            break;
        }
        // Read no more than the bridge can take, so nothing read is ever dropped.
        let room = if bridge.read_target() {
            to_line_cap
                .saturating_sub(bridge.to_line_len())
                .min(TCP_READ)
        } else {
            0
        };
        let to_line = bridge.to_line_len() > 0;
        let to_target = bridge.to_target_len() > 0 && wtx.is_some();
        let take_line = bridge.read_line() && from_line.is_empty();
        let wake = bridge
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = line.events.recv(), if take_line => match ev {
                Some(LineEvent::Data(bytes)) => from_line.extend_from_slice(&bytes),
                Some(LineEvent::CarrierLost) | None => bridge.end(Reason::CarrierLost),
                Some(LineEvent::RtpTimeout) => bridge.end(Reason::RtpTimeout),
                Some(LineEvent::Connected { .. }) => {}
            },
            r = rd.read(buf.get_mut(..room).unwrap_or(&mut [])), if reading && room > 0 => match r {
                Ok(0) | Err(_) => {
                    reading = false;
                    bridge.target_closed(Instant::now());
                }
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    // At most `room` bytes were read, so the bridge takes them all.
                    let _ = bridge.push_from_target(Instant::now(), data);
                }
            },
            permit = line.tx.reserve(), if to_line => match permit {
                Ok(p) => p.send(bridge.pull_to_line(TX_CHUNK)),
                Err(_) => bridge.end(Reason::CarrierLost),
            },
            permit = async { wtx.as_ref()?.reserve().await.ok() }, if to_target => {
                if let Some(p) = permit {
                    p.send(bridge.pull_to_target(TCP_READ));
                } else {
                    writer_gone = true;
                }
            },
            _ = tokio::time::sleep_until(wake) => bridge.handle_timeout(Instant::now()),
        }
        if std::mem::take(&mut writer_gone) {
            // The writer died (a write failed): the target is gone.
            wtx = None;
            reading = false;
            bridge.target_closed(Instant::now());
        }
    }
    drop(wtx);
    // Orderly end: what the bridge released to the line leaves before the hang-up (not after
    // carrier loss: nobody is listening).
    if end != Reason::CarrierLost {
        line.drain(DRAIN_MAX).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    info!(admin = %admin.as_str(), reason = ?end, "tcp bridge over");
    end
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
