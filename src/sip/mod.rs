//! Our SIP layer (RFC 3261): message codec, request validation, transactions, the per-trunk
//! endpoint, registration and the call dialogs (`call`: outgoing callback, `incall`: inbound).
//! Everything here is sans-IO; `runtime` moves the bytes.
//!
//! DESIGN.md planned this as a facade over rsipstack. rsipstack 0.7.14's parser refuses valid
//! RFC 4475 messages (extension methods such as `intmeth`, `esc02`, `mismatch02`), so it cannot
//! answer them 405/501 as RFC 4475 §3.1.1 requires, and its transaction layer has unbounded
//! internal queues; we therefore own this layer (the design allows it for exactly this case).

pub mod build;
pub mod call;
pub mod digest;
pub mod endpoint;
pub mod incall;
pub mod message;
pub mod ratelimit;
pub mod register;
pub mod transaction;
pub mod trunk;
pub mod validate;
