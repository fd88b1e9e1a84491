//! The SIP ingress path: datagram admission, framing, validation and dispatch of one trunk's
//! endpoint, for each trunk kind, plus the stream framer. Nothing may panic.
#![no_main]

use std::time::Instant;

use dialback::sip::endpoint::{Endpoint, EndpointConfig, TrunkKind};
use dialback::sip::message::{parse_stream, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    for kind in [TrunkKind::User, TrunkKind::Originate] {
        let mut ep = Endpoint::new(EndpointConfig {
            kind,
            local: "127.0.0.1:5070".parse().expect("static address"),
            limits: Limits::default(),
            per_source_rate: 1_000_000,
            per_source_burst: 1_000_000,
            max_sources: 4,
            max_transactions: 8,
            queue_depth: 8,
            allow_sources: None,
            user_agent: "fuzz".into(),
            rng_seed: 0,
        });
        let src = "192.0.2.1:5060".parse().expect("static address");
        ep.handle_datagram(now, src, data);
        // The same bytes again: retransmission matching must not panic either.
        ep.handle_datagram(now, src, data);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
        ep.handle_timeout(now + std::time::Duration::from_secs(40));
    }
    let _ = parse_stream(data, &Limits::default());
});
