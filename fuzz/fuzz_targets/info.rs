//! Fuzz the SIP INFO DTMF body parser with both content types.
#![no_main]

use dialback::media::info::parse_info_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_info_body("application/dtmf-relay", data);
    let _ = parse_info_body("application/dtmf", data);
});
