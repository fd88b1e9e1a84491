//! A modem link over RTP (issue 5): V.22bis, V.22, V.21 or Bell 103, or several tried in order
//! ([`crate::modem::link`]). One task per call owns the RTP socket, plays out
//! received packets through the fixed-delay jitter buffer into the modem's receiver (a lost
//! frame is `push_lost`, so symbol timing and carrier phase keep running), and sends the
//! modem's transmit samples as 20 ms G.711 packets on a steady clock. The data side is two
//! bounded byte channels: what the modem receives, and what it may send — taken only as fast
//! as the modem's queue accepts it, so a fast source cannot flood a 2400 bit/s line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::media::admit::{Admission, AdmitConfig, Verdict};
use crate::media::g711::Law;
use crate::media::jitter::{Frame, JitterBuffer, JitterConfig};
use crate::media::rtp::{self, Datagram, RtpSendStream, Ssrc};
use crate::modem::link::{Link, LinkConfig, LinkError, LinkEvent, Modulation};
use crate::modem::v22bis::{Rate, Role};

/// Samples per 20 ms frame.
const FRAME: usize = 160;
/// Consecutive lost frames bridged as a gap (`push_lost`); later ones are silence (200 ms:
/// far beyond the 20–40 ms gaps of real packet loss, well within a hang-up's silence).
const LOST_BRIDGED_FRAMES: u32 = 10;
/// Bytes per chunk on the data channels.
const CHUNK: usize = 64;
/// After the last byte left the modem: one character at 300 bit/s plus the far end's jitter
/// buffer and receiver delay.
const DRAIN_TAIL: Duration = Duration::from_millis(300);

/// What the modem reports to the session logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// Data flows; [`ModemLine::modulation`] says which modulation connected.
    Connected {
        rate_bps: u32,
    },
    Data(Vec<u8>),
    CarrierLost,
    /// No RTP arrived for [`LineParams::rtp_timeout`] (reported once).
    RtpTimeout,
}

/// Handle on a modem-over-RTP task.
pub struct ModemLine {
    pub events: mpsc::Receiver<LineEvent>,
    /// Bytes to transmit; the task takes them only as fast as the line carries them.
    pub tx: mpsc::Sender<Vec<u8>>,
    /// Bytes the task has taken from `tx` that are not on the line yet.
    unsent: Arc<AtomicUsize>,
    /// The modulation of the current attempt, then the one that connected.
    modulation: Arc<AtomicU8>,
    task: JoinHandle<()>,
}

impl ModemLine {
    /// The modulation being tried, or once `Connected` was reported, the one that connected
    /// (V.22 when a V.22bis attempt fell back to 1200 bit/s in its handshake).
    pub fn modulation(&self) -> Modulation {
        decode(self.modulation.load(Ordering::SeqCst))
    }

    /// Wait until everything given to `tx` has been sent on the line (the last character may
    /// still be leaving), or `max`; then give the far end's receiver a moment. For an orderly
    /// end: drain, then hang up.
    pub async fn drain(&self, max: Duration) {
        let end = tokio::time::Instant::now() + max;
        while tokio::time::Instant::now() < end {
            if self.tx.capacity() == self.tx.max_capacity()
                && self.unsent.load(Ordering::Relaxed) == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // One character at 300 bit/s, plus the far end's jitter buffer.
        tokio::time::sleep(DRAIN_TAIL).await;
    }
}

impl Drop for ModemLine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which modem runs on the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineModem {
    /// V.22bis, or V.22 when `max_rate` is 1200 (the handshake falls back by itself).
    V22bis,
    /// V.21 at 300 bit/s (ITU-T channel 1 for the caller, 2 for the answerer).
    V21,
    /// Bell 103 at 300 bit/s (originate / answer bands).
    Bell103,
}

/// Audio and modem parameters of the call.
#[derive(Debug, Clone, Copy)]
pub struct LineParams {
    pub remote: SocketAddr,
    pub law: Law,
    pub payload_type: u8,
    pub modem: LineModem,
    pub role: Role,
    pub max_rate: Rate,
    pub tx_level_dbm0: f32,
    pub jitter: Duration,
    /// Report [`LineEvent::RtpTimeout`] after this long without RTP (`media.rtp_timeout_s`);
    /// `None`: never.
    pub rtp_timeout: Option<Duration>,
}

/// Start the modem on `socket`: `p.modem` at `p.max_rate`, nothing to fall back to. Fails
/// only on a bad modem configuration.
pub fn spawn(socket: Arc<UdpSocket>, p: LineParams) -> Result<ModemLine, LinkError> {
    let only = match (p.modem, p.max_rate) {
        (LineModem::V22bis, Rate::R2400) => Modulation::V22bis,
        (LineModem::V22bis, Rate::R1200) => Modulation::V22,
        (LineModem::V21, _) => Modulation::V21,
        (LineModem::Bell103, _) => Modulation::Bell103,
    };
    spawn_link(socket, p, &[only])
}

/// Start a link that tries `modulations` in order (see [`crate::modem::link`]); `p.modem`
/// and `p.max_rate` are not used. Fails only on a bad modem configuration.
pub fn spawn_link(
    socket: Arc<UdpSocket>,
    p: LineParams,
    modulations: &[Modulation],
) -> Result<ModemLine, LinkError> {
    let modem = Link::new(&LinkConfig {
        role: p.role,
        modulations: modulations.to_vec(),
        tx_level_dbm0: p.tx_level_dbm0,
    })?;
    let (etx, erx) = mpsc::channel(64);
    let (ttx, trx) = mpsc::channel(8);
    let unsent = Arc::new(AtomicUsize::new(0));
    let modulation = Arc::new(AtomicU8::new(encode(modem.modulation())));
    let shared = Shared {
        unsent: unsent.clone(),
        modulation: modulation.clone(),
    };
    let task = tokio::spawn(run(socket, p, modem, etx, trx, shared));
    Ok(ModemLine {
        events: erx,
        tx: ttx,
        unsent,
        modulation,
        task,
    })
}

/// State the task shares with its [`ModemLine`].
struct Shared {
    unsent: Arc<AtomicUsize>,
    modulation: Arc<AtomicU8>,
}

fn encode(m: Modulation) -> u8 {
    match m {
        Modulation::V22bis => 0,
        Modulation::V22 => 1,
        Modulation::V21 => 2,
        Modulation::Bell103 => 3,
    }
}

fn decode(v: u8) -> Modulation {
    match v {
        1 => Modulation::V22,
        2 => Modulation::V21,
        3 => Modulation::Bell103,
        _ => Modulation::V22bis,
    }
}

async fn run(
    socket: Arc<UdpSocket>,
    p: LineParams,
    mut modem: Link,
    events: mpsc::Sender<LineEvent>,
    mut tx: mpsc::Receiver<Vec<u8>>,
    shared: Shared,
) {
    let Shared {
        unsent,
        modulation: current,
    } = shared;
    let start = Instant::now();
    let mut remote = p.remote;
    let mut jitter = JitterBuffer::new(
        start,
        JitterConfig {
            playout_delay: p.jitter,
            law: p.law,
            ..JitterConfig::default()
        },
    );
    let mut send = RtpSendStream::new(
        Ssrc(rand::random()),
        p.payload_type,
        rand::random(),
        rand::random(),
    );
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; 2048];
    let mut pcm = [0i16; FRAME];
    let mut frame = [0u8; FRAME];
    // Bytes taken from `tx` that the modem has not accepted yet (back-pressure).
    let mut pending: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut rx_bytes: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut tx_open = true;
    let mut last_rtp = start;
    let mut timed_out = false;
    let mut lost_run = 0u32;
    // RFC 7362 latching: the first packet fixes the far end (the answerer may not know it
    // before); strangers' packets are dropped and counted.
    let mut admission = Admission::new(AdmitConfig::new(p.remote, p.payload_type, None));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(c) = admission.report_due(now) {
                    warn!(malformed = c.malformed, foreign_source = c.foreign_source,
                          unknown_payload_type = c.unknown_payload_type,
                          "dropped RTP datagrams on the modem's media port");
                }
                // Inactivity counts every RTP packet from the peer, comfort noise (RFC 3389)
                // and events included, not only the audio the jitter buffer plays out.
                if !timed_out && p.rtp_timeout.is_some_and(|t| now.saturating_duration_since(last_rtp) >= t) {
                    timed_out = true;
                    if events.send(LineEvent::RtpTimeout).await.is_err() { return; }
                }
                // Receive side: every frame due, or a lost one, keeps the modem's clock running.
                while let Some(f) = jitter.poll_frame(now) {
                    match f {
                        Frame::Audio(samples) => {
                            lost_run = 0;
                            modem.push(&samples);
                        }
                        // A short gap keeps the modem's clocks running; a long one is the far
                        // end gone (RTP stopped), which the modem must see as silence so its
                        // carrier detector ends the session.
                        Frame::Lost if lost_run < LOST_BRIDGED_FRAMES => {
                            lost_run += 1;
                            modem.push_lost(FRAME);
                        }
                        Frame::Lost => modem.push(&[0; FRAME]),
                    }
                }
                // Transmit side. With no far address yet (learned from the first packet),
                // nothing could be sent: the start-up (an answer tone, say) waits for it
                // rather than play to nobody.
                if remote.ip().is_unspecified() {
                    continue;
                }
                if !pending.is_empty() {
                    let n = modem.write(&pending);
                    pending.drain(..n.min(pending.len()));
                }
                modem.fill(&mut pcm);
                unsent.store(pending.len() + modem.tx_pending(), Ordering::Relaxed);
                for (o, s) in frame.iter_mut().zip(pcm.iter()) {
                    *o = p.law.encode(*s);
                }
                let mut pkt = Vec::with_capacity(12 + FRAME);
                if send.audio_header(FRAME as u32).write(&frame, &mut pkt).is_ok()
                    && !remote.ip().is_unspecified()
                {
                    let _ = socket.send_to(&pkt, remote).await;
                }
                while let Some(ev) = modem.poll_event() {
                    match ev {
                        LinkEvent::Trying { modulation } => {
                            let after_ms = start.elapsed().as_millis() as u64;
                            info!(modulation = modulation.name(), after_ms, "modem trying");
                            current.store(encode(modulation), Ordering::SeqCst);
                        }
                        LinkEvent::Connected { modulation, rate_bps } => {
                            let after_ms = start.elapsed().as_millis() as u64;
                            info!(modulation = modulation.name(), rate_bps, after_ms, "modem connected");
                            current.store(encode(modulation), Ordering::SeqCst);
                            if events.send(LineEvent::Connected { rate_bps }).await.is_err() { return; }
                        }
                        LinkEvent::Data(b) => rx_bytes.push(b),
                        LinkEvent::CarrierLost => {
                            let _ = events.send(LineEvent::CarrierLost).await;
                        }
                    }
                }
                if !rx_bytes.is_empty() {
                    let chunk = std::mem::replace(&mut rx_bytes, Vec::with_capacity(CHUNK));
                    if events.send(LineEvent::Data(chunk)).await.is_err() { return; }
                }
            }
            b = tx.recv(), if tx_open && pending.len() < CHUNK => match b {
                Some(bytes) => {
                    pending.extend_from_slice(&bytes);
                    unsent.fetch_add(bytes.len(), Ordering::Relaxed);
                }
                None => tx_open = false,
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let now = Instant::now();
                let parsed = rtp::parse(buf.get(..n).unwrap_or(&[]));
                let verdict = admission.admit(now, src, &parsed);
                if matches!(verdict, Verdict::Drop(_)) {
                    continue;
                }
                // Audio, or comfort noise (RFC 3389): the far end is alive.
                last_rtp = now;
                remote = admission.remote();
                if let (Verdict::Audio, Ok(Datagram::Rtp(pkt))) = (verdict, &parsed) {
                    jitter.push(now, pkt);
                }
            }
        }
    }
}
