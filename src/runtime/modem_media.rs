//! A V.22bis / V.22 modem over RTP (issue 5): one task per call owns the RTP socket, plays out
//! received packets through the fixed-delay jitter buffer into the modem's receiver (a lost
//! frame is `push_lost`, so symbol timing and carrier phase keep running), and sends the
//! modem's transmit samples as 20 ms G.711 packets on a steady clock. The data side is two
//! bounded byte channels: what the modem receives, and what it may send — taken only as fast
//! as the modem's queue accepts it, so a fast source cannot flood a 2400 bit/s line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::media::g711::Law;
use crate::media::jitter::{Frame, JitterBuffer, JitterConfig};
use crate::media::rtp::{self, Datagram, RtpSendStream, Ssrc};
use crate::modem::fsk::{FskConfig, FskMode, FskModem};
use crate::modem::v22bis::{ModemEvent, Rate, Role, V22Config, V22bisModem};
use crate::modem::ModemEvent as FskEvent;

/// Samples per 20 ms frame.
const FRAME: usize = 160;
/// Bytes per chunk on the data channels.
const CHUNK: usize = 64;

/// What the modem reports to the session logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
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
    task: JoinHandle<()>,
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

/// Why a modem could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    V22(#[from] crate::modem::v22bis::V22Error),
    #[error(transparent)]
    Fsk(#[from] crate::modem::ModemError),
}

/// One of our modems behind one interface.
enum AnyModem {
    V22(Box<V22bisModem>),
    Fsk(Box<FskModem>),
}

impl AnyModem {
    fn new(p: &LineParams) -> Result<AnyModem, LineError> {
        Ok(match p.modem {
            LineModem::V22bis => AnyModem::V22(Box::new(V22bisModem::new(
                p.role,
                V22Config {
                    max_rate: p.max_rate,
                    tx_level_dbm0: p.tx_level_dbm0,
                    ..V22Config::default()
                },
            )?)),
            LineModem::V21 | LineModem::Bell103 => {
                let mode = match (p.modem, p.role) {
                    (LineModem::V21, Role::Caller) => FskMode::V21Caller,
                    (LineModem::V21, Role::Answerer) => FskMode::V21Answerer,
                    (_, Role::Caller) => FskMode::Bell103Originate,
                    (_, Role::Answerer) => FskMode::Bell103Answer,
                };
                let cfg = FskConfig {
                    tx_level_dbm0: p.tx_level_dbm0,
                    ..FskConfig::default()
                };
                AnyModem::Fsk(Box::new(FskModem::new(mode, cfg)?))
            }
        })
    }
    fn push(&mut self, s: &[i16]) {
        match self {
            AnyModem::V22(m) => m.push(s),
            AnyModem::Fsk(m) => m.push(s),
        }
    }
    fn push_lost(&mut self, n: usize) {
        match self {
            AnyModem::V22(m) => m.push_lost(n),
            AnyModem::Fsk(m) => m.push_lost(n),
        }
    }
    fn fill(&mut self, out: &mut [i16]) {
        match self {
            AnyModem::V22(m) => m.fill(out),
            AnyModem::Fsk(m) => m.fill(out),
        }
    }
    fn write(&mut self, b: &[u8]) -> usize {
        match self {
            AnyModem::V22(m) => m.write(b),
            AnyModem::Fsk(m) => m.write(b),
        }
    }
    /// The next event, in the line's terms. FSK has no training: carrier up is CONNECT 300.
    fn poll(&mut self) -> Option<Option<LineEventOrByte>> {
        match self {
            AnyModem::V22(m) => m.poll_event().map(|e| match e {
                ModemEvent::Connected { rate_bps } => Some(LineEventOrByte::Connected(rate_bps)),
                ModemEvent::Data(b) => Some(LineEventOrByte::Byte(b)),
                ModemEvent::CarrierLost => Some(LineEventOrByte::Lost),
                _ => None,
            }),
            AnyModem::Fsk(m) => m.poll_event().map(|e| match e {
                FskEvent::CarrierUp => Some(LineEventOrByte::Connected(300)),
                FskEvent::Data(b) => Some(LineEventOrByte::Byte(b)),
                FskEvent::CarrierDown => Some(LineEventOrByte::Lost),
                _ => None,
            }),
        }
    }
}

enum LineEventOrByte {
    Connected(u32),
    Byte(u8),
    Lost,
}

/// Start the modem on `socket`. Fails only on a bad modem configuration.
pub fn spawn(socket: Arc<UdpSocket>, p: LineParams) -> Result<ModemLine, LineError> {
    let modem = AnyModem::new(&p)?;
    let (etx, erx) = mpsc::channel(64);
    let (ttx, trx) = mpsc::channel(8);
    let task = tokio::spawn(run(socket, p, modem, etx, trx));
    Ok(ModemLine {
        events: erx,
        tx: ttx,
        task,
    })
}

async fn run(
    socket: Arc<UdpSocket>,
    p: LineParams,
    mut modem: AnyModem,
    events: mpsc::Sender<LineEvent>,
    mut tx: mpsc::Receiver<Vec<u8>>,
) {
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
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                // Inactivity counts every RTP packet from the peer, comfort noise (RFC 3389)
                // and events included, not only the audio the jitter buffer plays out.
                if !timed_out && p.rtp_timeout.is_some_and(|t| now.saturating_duration_since(last_rtp) >= t) {
                    timed_out = true;
                    if events.send(LineEvent::RtpTimeout).await.is_err() { return; }
                }
                // Receive side: every frame due, or a lost one, keeps the modem's clock running.
                while let Some(f) = jitter.poll_frame(now) {
                    match f {
                        Frame::Audio(samples) => modem.push(&samples),
                        Frame::Lost => modem.push_lost(FRAME),
                    }
                }
                // Transmit side.
                if !pending.is_empty() {
                    let n = modem.write(&pending);
                    pending.drain(..n.min(pending.len()));
                }
                modem.fill(&mut pcm);
                for (o, s) in frame.iter_mut().zip(pcm.iter()) {
                    *o = p.law.encode(*s);
                }
                let mut pkt = Vec::with_capacity(12 + FRAME);
                if send.audio_header(FRAME as u32).write(&frame, &mut pkt).is_ok()
                    && !remote.ip().is_unspecified()
                {
                    let _ = socket.send_to(&pkt, remote).await;
                }
                while let Some(ev) = modem.poll() {
                    match ev {
                        Some(LineEventOrByte::Connected(rate_bps)) => {
                            info!(rate_bps, after_ms = start.elapsed().as_millis() as u64, "modem connected");
                            if events.send(LineEvent::Connected { rate_bps }).await.is_err() { return; }
                        }
                        Some(LineEventOrByte::Byte(b)) => rx_bytes.push(b),
                        Some(LineEventOrByte::Lost) => {
                            let _ = events.send(LineEvent::CarrierLost).await;
                        }
                        None => debug!("modem event"),
                    }
                }
                if !rx_bytes.is_empty() {
                    let chunk = std::mem::replace(&mut rx_bytes, Vec::with_capacity(CHUNK));
                    if events.send(LineEvent::Data(chunk)).await.is_err() { return; }
                }
            }
            b = tx.recv(), if tx_open && pending.len() < CHUNK => match b {
                Some(bytes) => pending.extend_from_slice(&bytes),
                None => tx_open = false,
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                if let Ok(Datagram::Rtp(pkt)) = rtp::parse(buf.get(..n).unwrap_or(&[])) {
                    last_rtp = Instant::now();
                    if pkt.payload_type == p.payload_type {
                        remote = src;
                        jitter.push(Instant::now(), &pkt);
                    }
                }
            }
        }
    }
}
