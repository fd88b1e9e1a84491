//! Fuzz the V.22bis / V.22 answerer's receive path with arbitrary samples, alone or added to a
//! well-behaved far end's signal (body shared with the other role in `v22bis_rx.inc`).
#![no_main]

const ROLE: dialback::modem::v22bis::Role = dialback::modem::v22bis::Role::Answerer;

include!("v22bis_rx.inc");
