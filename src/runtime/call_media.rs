//! Media of an inbound call to the gate (DESIGN.md step 2): one task per call owns the RTP
//! socket, sends 20 ms G.711 frames (a tone cue when one is playing, silence otherwise), and
//! turns what arrives into one digit stream: RFC 4733 events and in-band tones, merged so a
//! key seen both ways counts once (`media::dtmf`). Symmetric RTP: once the caller's packets
//! arrive, we answer to where they come from. Cues and WAV prompts play in the order asked,
//! each from a frame boundary. When no RTP arrives for `rtp_timeout` (issue 3 point 2,
//! `media.rtp_timeout_s`), the task reports it once so the call can be ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::media::dtmf::{Digit, DtmfMerger, DtmfSource, MergeConfig, Observation};
use crate::media::g711::Law;
use crate::media::inband::{InbandConfig, InbandDetector};
use crate::media::rfc4733::{Receiver, ReceiverConfig};
use crate::media::rtp::{self, Datagram, RtpSendStream, Ssrc};
use crate::media::tones::ToneSequence;
use crate::runtime::prompts::{Samples, Sound};

/// Level of the gate's tone cues.
const CUE_LEVEL_DBM0: f64 = -13.0;
/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Most sounds waiting to play; more are dropped (a caller keying ahead of the prompts).
const MAX_QUEUED: usize = 8;

/// What the call logic asks of the media task.
#[derive(Debug, Clone)]
pub enum MediaCmd {
    /// Play after what is already playing or queued.
    Play(Sound),
    /// A key that came by SIP INFO: merged with the media paths so it counts once.
    InfoDigit(char),
}

/// What a call's media task reports, tagged with the call's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A key, from RFC 4733, in-band or INFO, each key once.
    Digit(char),
    /// No RTP arrived for the call's `rtp_timeout` (reported once).
    RtpTimeout,
}

/// Handle on a call's media task.
pub struct CallMedia {
    pub cmds: mpsc::Sender<MediaCmd>,
    task: JoinHandle<()>,
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Negotiated parameters of the call's audio.
#[derive(Debug, Clone, Copy)]
pub struct MediaParams {
    pub remote: SocketAddr,
    pub law: Law,
    pub payload_type: u8,
    pub telephone_event_pt: Option<u8>,
    pub inband: InbandConfig,
    /// Report [`MediaEvent::RtpTimeout`] after this long without an RTP packet.
    pub rtp_timeout: Duration,
}

/// What is playing now.
enum Playing {
    Tone(ToneSequence),
    Prompt { samples: Samples, at: usize },
}

impl Playing {
    fn new(sound: Sound) -> Playing {
        match sound {
            Sound::Tone(cue) => Playing::Tone(cue.sequence(CUE_LEVEL_DBM0)),
            Sound::Prompt(samples) => Playing::Prompt { samples, at: 0 },
        }
    }

    /// Fill `out` (already silence); returns false once the sound is over.
    fn fill(&mut self, out: &mut [i16]) -> bool {
        match self {
            Playing::Tone(t) => t.fill(out) == out.len(),
            Playing::Prompt { samples, at } => {
                let rest = samples.get(*at..).unwrap_or(&[]);
                let n = rest.len().min(out.len());
                for (o, s) in out.iter_mut().zip(rest.iter()) {
                    *o = *s;
                }
                *at += n;
                *at < samples.len()
            }
        }
    }
}

/// Start the media task on `socket`; keys go to `digits` tagged with `key`.
pub fn spawn(
    socket: Arc<UdpSocket>,
    params: MediaParams,
    key: u64,
    digits: mpsc::Sender<(u64, MediaEvent)>,
) -> CallMedia {
    let (ctx, crx) = mpsc::channel(8);
    let task = tokio::spawn(run(socket, params, key, digits, crx));
    CallMedia { cmds: ctx, task }
}

async fn run(
    socket: Arc<UdpSocket>,
    p: MediaParams,
    key: u64,
    digits: mpsc::Sender<(u64, MediaEvent)>,
    mut cmds: mpsc::Receiver<MediaCmd>,
) {
    let origin = Instant::now();
    let mut remote = p.remote;
    let mut send = RtpSendStream::new(
        Ssrc(rand::random()),
        p.payload_type,
        rand::random(),
        rand::random(),
    );
    let mut events = Receiver::new(ReceiverConfig::default());
    let mut inband = match InbandDetector::new(p.inband) {
        Ok(d) => Some(d),
        Err(e) => {
            debug!(error = %e, "in-band DTMF detector disabled");
            None
        }
    };
    let mut merger = DtmfMerger::new(MergeConfig::default());
    let mut playing: Option<Playing> = None;
    let mut queue: std::collections::VecDeque<Sound> = std::collections::VecDeque::new();
    let mut last_rtp = origin;
    let mut timed_out = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; 2048];
    let mut pcm = [0i16; FRAME];
    let mut frame = [0u8; FRAME];
    let emit = |m: Option<crate::media::dtmf::MergedDigit>| {
        if let Some(m) = m {
            let _ = digits.try_send((key, MediaEvent::Digit(m.digit.as_char())));
        }
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                pcm.fill(0);
                if playing.is_none() {
                    playing = queue.pop_front().map(Playing::new);
                }
                if let Some(p) = playing.as_mut() {
                    if !p.fill(&mut pcm) {
                        playing = None;
                    }
                }
                for (o, s) in frame.iter_mut().zip(pcm.iter()) {
                    *o = p.law.encode(*s);
                }
                let mut pkt = Vec::with_capacity(12 + FRAME);
                if send.audio_header(FRAME as u32).write(&frame, &mut pkt).is_ok()
                    && !remote.ip().is_unspecified()
                {
                    let _ = socket.send_to(&pkt, remote).await;
                }
                let now = Instant::now();
                if !timed_out && now.saturating_duration_since(last_rtp) >= p.rtp_timeout {
                    timed_out = true;
                    let _ = digits.send((key, MediaEvent::RtpTimeout)).await;
                }
                events.handle_timeout(now);
                while let Some(k) = events.poll_event() {
                    emit(merger.observe(Observation { digit: k.digit, source: DtmfSource::Rfc4733, start: k.start, end: k.end }));
                }
            }
            c = cmds.recv() => match c {
                Some(MediaCmd::Play(sound)) => {
                    if queue.len() < MAX_QUEUED {
                        queue.push_back(sound);
                    }
                }
                Some(MediaCmd::InfoDigit(c)) => {
                    if let Some(d) = Digit::from_char(c) {
                        let now = Instant::now();
                        emit(merger.observe(Observation { digit: d, source: DtmfSource::Info, start: now, end: now }));
                    }
                }
                None => return,
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let now = Instant::now();
                let Ok(Datagram::Rtp(pkt)) = rtp::parse(buf.get(..n).unwrap_or(&[])) else { continue };
                remote = src;
                last_rtp = now;
                if Some(pkt.payload_type) == p.telephone_event_pt {
                    if events.handle_packet(now, pkt.marker, pkt.timestamp, pkt.payload).is_ok() {
                        while let Some(k) = events.poll_event() {
                            emit(merger.observe(Observation { digit: k.digit, source: DtmfSource::Rfc4733, start: k.start, end: k.end }));
                        }
                    }
                } else if pkt.payload_type == p.payload_type {
                    if let Some(det) = inband.as_mut() {
                        let mut samples = [0i16; 960];
                        let n = pkt.payload.len().min(samples.len());
                        for (o, b) in samples.iter_mut().zip(pkt.payload.iter()) {
                            *o = p.law.decode(*b);
                        }
                        det.push(samples.get(..n).unwrap_or(&[]));
                        while let Some(ev) = det.poll_event() {
                            if let Some(d) = Digit::from_char(ev.digit) {
                                emit(merger.observe(Observation::from_samples(d, DtmfSource::InBand, origin, ev.start_sample, ev.end_sample)));
                            }
                        }
                    }
                }
            }
        }
    }
}
