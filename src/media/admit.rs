//! Which datagrams on a call's media port are the call's media: RTP latching and drop counts.
//!
//! A media port is reachable by anyone who learns or guesses it. Symmetric RTP (RFC 4961)
//! means we send to where the far end's packets come from, which NAT makes necessary (the
//! address in the SDP may be private); but following *every* source would let a stranger
//! take the call's audio or inject DTMF. So the port latches (RFC 7362 §4, "latching"):
//!
//! - the first usable RTP packet, from the SDP address or from anywhere when the SDP address
//!   is a NAT's inside, fixes the source (address and SSRC);
//! - packets from another address are dropped and counted, unless the latched source has
//!   been silent for [`AdmitConfig::relatch_after`], when the new source takes over (a media
//!   relay restarted, or a mobile handset changed its path — RFC 7362 §4.2 accepts that
//!   risk window);
//! - a new SSRC from the latched address is accepted (RFC 3550 §8.2: a restarted sender
//!   picks a new SSRC), and counted;
//! - payload types other than the negotiated audio and telephone-event ones, RTCP
//!   (RFC 5761 §4) and datagrams that do not parse are dropped and counted by reason.
//!
//! The counts are kept so the runtime can log one line per call (bad input is counted and
//! logged, never acted on). Sans-IO: time is passed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp::{Datagram, RtpError, Ssrc};

/// Admission settings of one call's media port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitConfig {
    /// Where the far end's SDP says its media comes from.
    pub sdp_remote: SocketAddr,
    /// The negotiated audio payload type (0 PCMU, 8 PCMA).
    pub audio_pt: u8,
    /// The negotiated telephone-event payload type, if any (RFC 4733 §7.1.1).
    pub event_pt: Option<u8>,
    /// Silence of the latched source after which another source may take over.
    pub relatch_after: Duration,
}

impl AdmitConfig {
    /// Defaults: re-latch after 2 s of silence (longer than any jitter or DTX gap we accept
    /// for DTMF or modem media, shorter than the RTP inactivity timeout).
    pub fn new(sdp_remote: SocketAddr, audio_pt: u8, event_pt: Option<u8>) -> Self {
        AdmitConfig {
            sdp_remote,
            audio_pt,
            event_pt,
            relatch_after: Duration::from_secs(2),
        }
    }
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The call's audio: play it out / run detectors on it.
    Audio,
    /// The call's telephone-events.
    Event,
    /// Not for us; see [`AdmitCounts`] for why.
    Drop(DropReason),
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Did not parse as RTP or RTCP.
    Malformed,
    /// From an address other than the latched source.
    ForeignSource,
    /// A payload type that was not negotiated.
    UnknownPayloadType,
    /// RTCP: recognised and ignored.
    Rtcp,
}

/// Per-call counters, for one log line at the end of the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmitCounts {
    pub audio: u64,
    pub events: u64,
    pub malformed: u64,
    pub foreign_source: u64,
    pub unknown_payload_type: u64,
    pub rtcp: u64,
    /// Times a new source took over after the latched one went silent.
    pub relatched: u64,
    /// SSRC changes from the latched address.
    pub ssrc_changes: u64,
}

impl AdmitCounts {
    /// Datagrams dropped as bad input (RTCP is expected traffic, not counted here).
    pub fn rejected(&self) -> u64 {
        self.malformed + self.foreign_source + self.unknown_payload_type
    }
}

#[derive(Debug, Clone, Copy)]
struct Latched {
    addr: SocketAddr,
    ssrc: Ssrc,
    last: Instant,
}

/// The admission state of one call's media port.
#[derive(Debug, Clone)]
pub struct Admission {
    cfg: AdmitConfig,
    latched: Option<Latched>,
    counts: AdmitCounts,
}

impl Admission {
    pub fn new(cfg: AdmitConfig) -> Self {
        Admission {
            cfg,
            latched: None,
            counts: AdmitCounts::default(),
        }
    }

    /// Classifies a datagram that arrived from `src` at `now`; `parsed` is
    /// [`super::rtp::parse`] of its bytes.
    pub fn admit(
        &mut self,
        now: Instant,
        src: SocketAddr,
        parsed: &Result<Datagram<'_>, RtpError>,
    ) -> Verdict {
        let pkt = match parsed {
            Err(_) => return self.drop(DropReason::Malformed),
            Ok(Datagram::Rtcp { .. }) => return self.drop(DropReason::Rtcp),
            Ok(Datagram::Rtp(p)) => p,
        };
        let kind = if pkt.payload_type == self.cfg.audio_pt {
            Verdict::Audio
        } else if Some(pkt.payload_type) == self.cfg.event_pt {
            Verdict::Event
        } else {
            // Checked before latching: a stranger's odd packet must not capture the port.
            return self.drop(DropReason::UnknownPayloadType);
        };
        match self.latched.as_mut() {
            None => {
                self.latched = Some(Latched {
                    addr: src,
                    ssrc: pkt.ssrc,
                    last: now,
                });
            }
            Some(l) if l.addr == src => {
                if l.ssrc != pkt.ssrc {
                    l.ssrc = pkt.ssrc;
                    self.counts.ssrc_changes += 1;
                }
                l.last = now;
            }
            Some(l) => {
                // RFC 7362 §4.2: only a source that has gone quiet may be replaced; the SDP
                // address may always take over from a source latched elsewhere.
                let quiet = now.saturating_duration_since(l.last) >= self.cfg.relatch_after;
                if !(quiet || src == self.cfg.sdp_remote) {
                    return self.drop(DropReason::ForeignSource);
                }
                *l = Latched {
                    addr: src,
                    ssrc: pkt.ssrc,
                    last: now,
                };
                self.counts.relatched += 1;
            }
        }
        match kind {
            Verdict::Audio => self.counts.audio += 1,
            _ => self.counts.events += 1,
        }
        kind
    }

    /// Where to send our media: the latched source, or the SDP address before any packet.
    pub fn remote(&self) -> SocketAddr {
        self.latched.map_or(self.cfg.sdp_remote, |l| l.addr)
    }

    pub fn counts(&self) -> AdmitCounts {
        self.counts
    }

    fn drop(&mut self, why: DropReason) -> Verdict {
        let c = &mut self.counts;
        match why {
            DropReason::Malformed => c.malformed += 1,
            DropReason::ForeignSource => c.foreign_source += 1,
            DropReason::UnknownPayloadType => c.unknown_payload_type += 1,
            DropReason::Rtcp => c.rtcp += 1,
        }
        Verdict::Drop(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{parse, RtpHeader};

    const SDP: &str = "192.0.2.1:4000";
    const NAT: &str = "198.51.100.7:31000";
    const STRANGER: &str = "203.0.113.66:5004";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn rtp(pt: u8, ssrc: u32, seq: u16) -> Vec<u8> {
        let h = RtpHeader {
            payload_type: pt,
            marker: false,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: Ssrc(ssrc),
        };
        let mut out = Vec::new();
        h.write(&[0xff; 160], &mut out).expect("encodable");
        out
    }

    fn admission() -> Admission {
        Admission::new(AdmitConfig::new(addr(SDP), 0, Some(101)))
    }

    fn feed(a: &mut Admission, now: Instant, src: &str, bytes: &[u8]) -> Verdict {
        a.admit(now, addr(src), &parse(bytes))
    }

    #[test]
    fn first_source_latches_even_behind_nat_and_strangers_are_dropped() {
        let t = Instant::now();
        let mut a = admission();
        assert_eq!(
            a.remote(),
            addr(SDP),
            "before any packet, send to the SDP address"
        );
        assert_eq!(feed(&mut a, t, NAT, &rtp(0, 7, 1)), Verdict::Audio);
        assert_eq!(
            a.remote(),
            addr(NAT),
            "symmetric RTP: answer where it comes from"
        );
        let later = t + Duration::from_millis(20);
        assert_eq!(
            feed(&mut a, later, STRANGER, &rtp(101, 9, 1)),
            Verdict::Drop(DropReason::ForeignSource),
            "an injected telephone-event from elsewhere is not a key press"
        );
        assert_eq!(feed(&mut a, later, NAT, &rtp(101, 7, 2)), Verdict::Event);
        assert_eq!(a.remote(), addr(NAT));
        let c = a.counts();
        assert_eq!((c.audio, c.events, c.foreign_source), (1, 1, 1));
    }

    #[test]
    fn a_quiet_source_can_be_replaced_and_the_sdp_address_always_can() {
        let t = Instant::now();
        let mut a = admission();
        feed(&mut a, t, NAT, &rtp(0, 7, 1));
        let soon = t + Duration::from_millis(500);
        assert_eq!(
            feed(&mut a, soon, STRANGER, &rtp(0, 9, 1)),
            Verdict::Drop(DropReason::ForeignSource)
        );
        assert_eq!(
            feed(&mut a, soon, SDP, &rtp(0, 8, 1)),
            Verdict::Audio,
            "the SDP address takes over"
        );
        assert_eq!(a.remote(), addr(SDP));
        let quiet = soon + Duration::from_secs(2);
        assert_eq!(feed(&mut a, quiet, NAT, &rtp(0, 7, 5)), Verdict::Audio);
        assert_eq!(a.remote(), addr(NAT));
        assert_eq!(a.counts().relatched, 2);
    }

    #[test]
    fn garbage_rtcp_and_unknown_payload_types_are_counted_and_never_latch() {
        let t = Instant::now();
        let mut a = admission();
        assert_eq!(
            feed(&mut a, t, STRANGER, &[0x80, 0x00, 0x01]),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            feed(&mut a, t, STRANGER, b"hello, world"),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            feed(&mut a, t, STRANGER, &rtp(18, 1, 1)),
            Verdict::Drop(DropReason::UnknownPayloadType),
            "G.729 was not negotiated"
        );
        // RTCP receiver report (RFC 3550 §6.4.2), header only.
        let rr = [0x80u8, 201, 0x00, 0x01, 0, 0, 0, 1];
        assert_eq!(
            feed(&mut a, t, STRANGER, &rr),
            Verdict::Drop(DropReason::Rtcp)
        );
        assert_eq!(a.remote(), addr(SDP), "nothing latched");
        let c = a.counts();
        assert_eq!(
            (c.malformed, c.unknown_payload_type, c.rtcp, c.rejected()),
            (2, 1, 1, 3)
        );
        assert_eq!(feed(&mut a, t, NAT, &rtp(0, 7, 1)), Verdict::Audio);
    }

    #[test]
    fn a_new_ssrc_from_the_latched_address_is_followed_and_counted() {
        let t = Instant::now();
        let mut a = admission();
        feed(&mut a, t, SDP, &rtp(0, 7, 1));
        assert_eq!(feed(&mut a, t, SDP, &rtp(0, 8, 40000)), Verdict::Audio);
        assert_eq!(feed(&mut a, t, SDP, &rtp(0, 8, 40001)), Verdict::Audio);
        assert_eq!(a.counts().ssrc_changes, 1);
    }
}
