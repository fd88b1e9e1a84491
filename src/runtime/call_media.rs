//! Media of an inbound call to the gate (DESIGN.md step 2): one task per call owns the RTP
//! socket, sends 20 ms G.711 frames (a tone cue when one is playing, silence otherwise), and
//! turns what arrives into one digit stream: RFC 4733 events and in-band tones, merged so a
//! key seen both ways counts once (`media::dtmf`). Symmetric RTP: once the caller's packets
//! arrive, we answer to where they come from. Cues and WAV prompts play in the order asked,
//! each from a frame boundary. When no RTP arrives for `rtp_timeout` (issue 3 point 2,
//! `media.rtp_timeout_s`), the task reports it once so the call can be ended. The in-band
//! detector runs on the audio's RTP clock (gaps from silence suppression or loss played as
//! silence) and its samples are placed in time from the newest packet's arrival, like RFC
//! 4733 events, so a key that a gateway sends both ways meets itself in the merger (issue 3,
//! carrier quirks).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::media::admit::{Admission, AdmitConfig, Verdict};
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
    let mut admission = Admission::new(AdmitConfig::new(
        p.remote,
        p.payload_type,
        p.telephone_event_pt,
    ));
    let mut ssrc_changes = 0;
    let mut send = RtpSendStream::new(
        Ssrc(rand::random()),
        p.payload_type,
        rand::random(),
        rand::random(),
    );
    let mut events = Receiver::new(ReceiverConfig::default());
    // Newest telephone-event timestamp of the current source (see `event_clock_restarted`).
    let mut newest_event_ts: Option<u32> = None;
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
    let mut clock = InbandClock::default();
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
                // Bad input is counted and logged, at most one line per 5 s while it lasts.
                if let Some(c) = admission.report_due(now) {
                    warn!(call = key, malformed = c.malformed, foreign_source = c.foreign_source,
                          unknown_payload_type = c.unknown_payload_type,
                          "dropped RTP datagrams on a call's media port");
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
                let parsed = rtp::parse(buf.get(..n).unwrap_or(&[]));
                let verdict = admission.admit(now, src, &parsed);
                let Ok(Datagram::Rtp(pkt)) = parsed else { continue };
                if matches!(verdict, Verdict::Drop(_)) {
                    continue;
                }
                if admission.counts().ssrc_changes != ssrc_changes {
                    // RFC 4733 §2.5.1.3 (via RFC 3550 §8.2): a new source restarts the events.
                    events = Receiver::new(ReceiverConfig::default());
                    newest_event_ts = None;
                    ssrc_changes = admission.counts().ssrc_changes;
                }
                remote = admission.remote();
                last_rtp = now;
                if Some(pkt.payload_type) == p.telephone_event_pt {
                    if event_clock_restarted(newest_event_ts, pkt.timestamp) {
                        // Same SSRC, clock far behind: without a restart every later key
                        // would be taken as a stale update of the last one.
                        events.reset();
                        newest_event_ts = None;
                    }
                    if newest_event_ts.is_none_or(|n| pkt.timestamp.wrapping_sub(n) < 1 << 31) {
                        newest_event_ts = Some(pkt.timestamp);
                    }
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
                        match clock.place(pkt.ssrc, pkt.timestamp, n) {
                            Placement::Late => {}
                            Placement::After(gap) => {
                                // Silence suppression or loss: the gap is played as silence,
                                // so pauses between keys keep their length (Q.24 timing).
                                for _ in 0..gap / FRAME {
                                    det.push(&[0i16; FRAME]);
                                }
                                det.push(&[0i16; FRAME][..gap % FRAME]);
                                det.push(samples.get(..n).unwrap_or(&[]));
                                // The detector's samples are placed in time from this packet's
                                // arrival, as RFC 4733 events are: a key seen both ways then
                                // overlaps in the merger however late the audio started.
                                let anchor = clock.anchor(now).unwrap_or(origin);
                                while let Some(ev) = det.poll_event() {
                                    if let Some(d) = Digit::from_char(ev.digit) {
                                        emit(merger.observe(Observation::from_samples(d, DtmfSource::InBand, anchor, ev.start_sample, ev.end_sample)));
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How far (in samples, 10 s) a telephone-event timestamp may fall behind the newest one of
/// its source and still be a late packet (a repeated end packet, RFC 4733 §2.5.1.4, or an
/// update overtaken in the network).
const EVENT_CLOCK_RESTART_SAMPLES: u32 = 80_000;

/// Whether a telephone-event stamped `ts` shows that the sender's RTP clock jumped (a huge
/// step back, or forward by more than 2^31, which serial-number arithmetic, RFC 3550 §A.1,
/// cannot tell apart) without a new SSRC. RFC 3550 §5.1 wants timestamps monotonic per
/// source, but a gateway that re-anchors its stream may not change SSRC: the receiver is
/// restarted rather than taking every later key as a stale update.
fn event_clock_restarted(newest: Option<u32>, ts: u32) -> bool {
    newest.is_some_and(|n| {
        let behind = n.wrapping_sub(ts);
        behind > EVENT_CLOCK_RESTART_SAMPLES && behind < 1 << 31
    })
}

/// Longest gap in the audio's RTP timestamps filled with silence for the in-band detector
/// (1 s): beyond it the stream is taken as restarted (new SSRC, or a jump) and not filled.
const MAX_FILL_SAMPLES: u32 = 8000;

/// The in-band detector's sample clock, kept on the audio's RTP media clock (RFC 3550 §5.1:
/// the timestamp counts sampling instants), and the arrival that anchors it to wall time.
#[derive(Debug, Default)]
struct InbandClock {
    /// The stream and the timestamp its next in-order packet carries.
    next: Option<(Ssrc, u32)>,
    /// Samples given to the detector so far.
    pushed: u64,
}

/// What to do with an audio packet.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Older than what was played (reordered or duplicated): not for the detector.
    Late,
    /// Play it after this many samples of silence.
    After(usize),
}

impl InbandClock {
    /// Place a packet of `len` samples stamped `ts` from `ssrc`; a new SSRC starts a new
    /// media clock (RFC 3550 §5.1: timestamps of different sources are unrelated).
    fn place(&mut self, ssrc: Ssrc, ts: u32, len: usize) -> Placement {
        // Serial-number comparison (RFC 3550 §A.1 style): a gap over 2^31 is a step back.
        let gap = match self.next {
            Some((s, next)) if s == ssrc => ts.wrapping_sub(next),
            _ => 0,
        };
        let back = gap.wrapping_neg();
        if gap > u32::MAX / 2 && back <= MAX_FILL_SAMPLES {
            return Placement::Late;
        }
        let fill = if gap <= MAX_FILL_SAMPLES { gap } else { 0 };
        // `len` is at most a 960-sample buffer, so the u32 cast is exact.
        self.next = Some((ssrc, ts.wrapping_add(len as u32)));
        self.pushed += u64::from(fill) + len as u64;
        Placement::After(fill as usize)
    }

    /// The instant of the detector's sample 0, if the newest sample arrived at `now`.
    fn anchor(&self, now: Instant) -> Option<Instant> {
        now.checked_sub(Duration::from_micros(self.pushed.saturating_mul(125)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inband_clock_fills_suppressed_silence_and_drops_late_packets() {
        let mut c = InbandClock::default();
        let s = Ssrc(7);
        assert_eq!(c.place(s, 1000, 160), Placement::After(0));
        assert_eq!(c.place(s, 1160, 160), Placement::After(0));
        // 300 ms of suppressed silence.
        assert_eq!(c.place(s, 1320 + 2400, 160), Placement::After(2400));
        // A reordered packet from before.
        assert_eq!(c.place(s, 1320, 160), Placement::Late);
        assert_eq!(c.pushed, 160 * 3 + 2400);
        // A jump far away: played at once, no fill.
        assert_eq!(c.place(s, 0x8000_0000, 160), Placement::After(0));
        assert_eq!(c.place(s, 0x8000_00A0, 160), Placement::After(0));
    }

    #[test]
    fn inband_clock_restarts_on_a_new_ssrc_even_a_little_behind() {
        let mut c = InbandClock::default();
        assert_eq!(c.place(Ssrc(1), 5000, 160), Placement::After(0));
        assert_eq!(c.place(Ssrc(2), 4000, 160), Placement::After(0));
        assert_eq!(c.place(Ssrc(2), 4160, 160), Placement::After(0));
    }

    #[test]
    fn event_clock_restarts_only_on_a_step_back_beyond_late_packets() {
        assert!(!event_clock_restarted(None, 5));
        // Repeated end packets and overtaken updates: a little behind, or equal.
        assert!(!event_clock_restarted(Some(100_000), 100_000));
        assert!(!event_clock_restarted(Some(100_000), 100_000 - 8000));
        // Newer, including across the wrap.
        assert!(!event_clock_restarted(Some(100_000), 0x7000_0000));
        assert!(!event_clock_restarted(Some(u32::MAX - 10), 200));
        // A jump back, or forward by more than 2^31 (the same thing on the wire).
        assert!(event_clock_restarted(Some(100_000), 100_000 - 80_001));
        assert!(event_clock_restarted(
            Some(1_000),
            1_000u32.wrapping_add(0x9000_0000)
        ));
    }

    #[test]
    fn inband_clock_handles_the_timestamp_wrap() {
        let mut c = InbandClock::default();
        assert_eq!(c.place(Ssrc(1), u32::MAX - 159, 160), Placement::After(0));
        assert_eq!(c.place(Ssrc(1), 160, 160), Placement::After(160));
    }

    #[test]
    fn inband_clock_anchor_puts_the_newest_sample_at_now() {
        let mut c = InbandClock::default();
        let _ = c.place(Ssrc(1), 0, 160);
        let _ = c.place(Ssrc(1), 160 + 8000 - 160, 160);
        let now = Instant::now() + Duration::from_secs(10);
        let origin = c.anchor(now).unwrap();
        assert_eq!(now - origin, Duration::from_micros(8160 * 125));
    }
}
