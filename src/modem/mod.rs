//! Software modems on 8 kHz linear samples: FSK (ITU-T V.21, Bell 103), answer tones
//! (ITU-T V.25, V.8) and the asynchronous character framing they carry (ITU-T V.4 / V.14 style
//! start-stop framing).
//!
//! Everything here is pure DSP: time is a sample count at [`SAMPLE_RATE_HZ`], generators fill
//! caller buffers (`fill`), receivers take samples (`push`) and answer through `poll_event`.
//! No clock, no IO, no allocation after construction.
//!
//! | module        | owns                                                              |
//! |---------------|-------------------------------------------------------------------|
//! | `fsk`         | V.21 / Bell 103 transmitter, receiver and full-duplex modem       |
//! | `uart`        | asynchronous start-stop framing (5-8 data bits, parity, stops)    |
//! | `answer_tone` | ANS, ANS/PR, ANSam, ANSam/PR, Bell 2225 Hz; calling tone          |
//! | `level`       | dBm0 <-> linear conversions for 16-bit G.711-range samples        |
//! | `link`        | modulations tried in order on one call, start-up, fallback        |
//! | `v22bis`      | V.22 (1200 bit/s) and V.22bis (2400 bit/s) modem with handshake   |
//! | `qam`         | V.22bis signal space, RRC shaping, receive front end              |
//! | `equalizer`   | T/2 LMS equaliser                                                 |
//! | `scrambler`   | V.22bis §5 scrambler / descrambler                                |
//! | `v14`         | V.14 start-stop framing on the synchronous stream                 |

pub mod answer_tone;
pub mod equalizer;
pub mod fsk;
pub mod level;
pub mod link;
pub mod qam;
pub mod scrambler;
pub mod uart;
pub mod v14;
pub mod v22bis;

/// Sample rate of every modem in this module (G.711 narrowband).
pub const SAMPLE_RATE_HZ: u32 = 8000;

/// What a data modem receiver reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemEvent {
    /// Received line signal detector went ON (V.24 circuit 109).
    CarrierUp,
    /// Received line signal detector went OFF (V.24 circuit 109).
    CarrierDown,
    /// One received character (the data bits, LSB first on the line).
    Data(u8),
    /// A character whose first stop bit was space; the character is dropped.
    FramingError,
    /// A character whose parity bit did not match; the character is dropped.
    ParityError,
}

/// Misconfiguration of a modem (API misuse; line impairments are events, not errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModemError {
    #[error("data bits per character must be 5..=8, got {data_bits}")]
    DataBits { data_bits: u8 },
    #[error("transmit level {dbm0} dBm0 outside {min}..={max} dBm0")]
    TxLevel { dbm0: f32, min: f32, max: f32 },
    #[error("carrier thresholds: on {on_dbm0} dBm0 must be above off {off_dbm0} dBm0")]
    CarrierThresholds { on_dbm0: f32, off_dbm0: f32 },
    #[error("FSK channel mark {mark_hz} Hz / space {space_hz} Hz / {baud} bd outside 100..=3900 Hz, 50..=2000 bd")]
    Channel {
        mark_hz: f32,
        space_hz: f32,
        baud: u32,
    },
    #[error("transmit queue length must be 1..={max}, got {len}")]
    TxQueueLen { len: usize, max: usize },
}
