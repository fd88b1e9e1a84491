//! Software modems for the callback leg.
//!
//! | module      | owns                                                            |
//! |-------------|-----------------------------------------------------------------|
//! | `v22bis`    | V.22 (1200 bit/s) and V.22bis (2400 bit/s) modem with handshake |
//! | `qam`       | V.22bis signal space, RRC shaping, receive front end            |
//! | `equalizer` | T/2 LMS equaliser                                               |
//! | `scrambler` | V.22bis §5 scrambler / descrambler                              |
//! | `v14`       | V.14 start-stop framing on the synchronous stream               |

pub mod equalizer;
pub mod qam;
pub mod scrambler;
pub mod v14;
pub mod v22bis;
