//! Shared test support: real processes (dialback, Kamailio, SIPp) on loopback.
#![allow(dead_code)]

pub mod dialback;
