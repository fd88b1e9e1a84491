//! Media core: G.711, RTP framing, the playout (jitter) buffer, DTMF from RFC 4733, SIP INFO and
//! in-band detection merged into one digit stream, and the tones we generate.
//!
//! Everything here is sans-IO (see `STYLE.md`): no sockets, no clock reads, no files. Protocol
//! time is an [`std::time::Instant`] passed in; audio time is a sample count at 8 kHz.
//!
//! | module    | owns                                                              | spec                    |
//! |-----------|-------------------------------------------------------------------|-------------------------|
//! | `g711`    | μ-law / A-law encode and decode                                   | ITU-T G.711             |
//! | `rtp`     | RTP header parse/build, `Ssrc`, sequence/timestamp extension      | RFC 3550, RFC 5761 §4   |
//! | `admit`   | which datagrams on a media port are the call's: latching, drop counts | RFC 7362 §4, RFC 4961 |
//! | `jitter`  | fixed-delay playout buffer producing 20 ms frames, inactivity     | RFC 3550 §6.4.1, A.1    |
//! | `rfc4733` | telephone-event payload, receiver state machine, sender           | RFC 4733                |
//! | `info`    | SIP INFO DTMF bodies (`application/dtmf-relay`, `application/dtmf`) | de-facto (Cisco/SIP Forum) |
//! | `dtmf`    | the `Digit` type and the merge of the three DTMF sources          | RFC 4733 §3.2           |
//! | `tones`   | phase-continuous tone generators: cues and DTMF                   | ITU-T Q.23, Q.24, E.180 |
//! | `inband`  | in-band DTMF receiver (Goertzel, talk-off guards)                 | ITU-T Q.23, Q.24        |
//! | `prompt`  | WAV prompts (8 kHz mono PCM or G.711) as samples                  | RIFF/WAVE               |

pub mod admit;
pub mod dtmf;
pub mod g711;
pub mod inband;
pub mod info;
pub mod jitter;
pub mod prompt;
pub mod rfc4733;
pub mod rtp;
pub mod tones;

/// Samples per second of every audio path in this crate (G.711 narrowband).
pub const SAMPLE_RATE_HZ: u32 = 8000;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
