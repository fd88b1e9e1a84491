//! dialback: a SIP softswitch plugin that guards remote maintenance with dial-back.
//!
//! An administrator reaches the gate over SIP (a call or a SIP MESSAGE on the user or admin
//! trunk), proves an ID and password, and sends a separate maintenance start signal whose digit
//! names the administrator. The gate maps the digit to numbers registered in advance, ends the
//! inbound contact and calls back through an originate-only trunk; on answer a software modem
//! carries a re-authenticated console session (JP H11-053315, claims 1 and 5).
//!
//! # Architecture
//!
//! Protocol, media, DSP and policy code is sans-IO: state machines that take input and `now`
//! and queue output. Only `runtime` (and the binary) touches sockets, tasks, files and clocks.
//!
//! | module    | owns                                                                 |
//! |-----------|----------------------------------------------------------------------|
//! | `config`  | the dialplan model, JSON parsing with located errors, validation     |
//! | `gate`    | the maintenance gate: auth steps, signals, decisions, lockout, audit |
//! | `media`   | G.711, RTP, jitter buffer, DTMF (RFC 4733, INFO, in-band), tones     |
//! | `sip`     | SIP codec, transactions, registration, digest auth, call dialogs     |
//! | `sdp`     | SDP offer/answer (RFC 3264) for G.711 audio and RFC 4733 events      |
//! | `runtime` | tokio edges: one socket per trunk, timers, shutdown                  |
//! | `modem`   | software modems: V.21, Bell 103, V.22, V.22bis, answer tones         |
//! | `console` | the maintenance console on the callback modem; the `tcp:` byte pump  |
#![forbid(unsafe_code)]

pub mod config;
pub mod console;
pub mod gate;
pub mod media;
pub mod modem;
pub mod runtime;
pub mod sdp;
pub mod sip;
