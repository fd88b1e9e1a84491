//! The inbound call over a real socket: `IncomingCall` + `Endpoint` (sans-IO) on the admin
//! trunk, driven by a tiny blocking UDP loop, against a SIPp caller
//! (`tests/sipp/uac_call_info.xml`: INVITE with SDP, ACK, three INFO dtmf-relay keys, then it
//! waits for our BYE). Proves the 200 carries a usable SDP answer and a dialog SIPp can send
//! in-dialog requests on, the keys arrive as `Dtmf` events in order, and our hangup's BYE is
//! accepted by the caller. Skips when SIPp is not installed (fails under CI).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dialback::sdp::{Codec, LocalMedia};
use dialback::sip::endpoint::{Endpoint, EndpointConfig, Event, TrunkKind};
use dialback::sip::incall::{IncomingCall, IncomingEvent};
use dialback::sip::message::{Limits, Method};
use support::sipp::Sipp;

struct Driver {
    sock: UdpSocket,
    ep: Endpoint,
    call: Option<IncomingCall>,
    local: LocalMedia,
    events: Vec<IncomingEvent>,
    hung_up: bool,
}

impl Driver {
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.sock.send_to(&t.bytes, t.route.addr).expect("send");
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            if let Some(c) = self.call.as_mut() {
                if c.handle_event(now, &mut self.ep, &ev) {
                    continue;
                }
            }
            if let Event::Request {
                id,
                route,
                info,
                msg,
            } = &ev
            {
                if info.method == Method::Invite && self.call.is_none() {
                    let call =
                        IncomingCall::accept(now, &mut self.ep, *id, *route, msg, &self.local)
                            .expect("offer accepted");
                    self.call = Some(call);
                }
            }
        }
        if let Some(c) = self.call.as_mut() {
            while let Some(e) = c.poll_event() {
                self.events.push(e);
            }
            // The gate hangs up once it has read the three keys (DESIGN.md flow step 2).
            let keys = self
                .events
                .iter()
                .filter(|e| matches!(e, IncomingEvent::Dtmf { .. }))
                .count();
            if keys == 3 && !self.hung_up {
                self.hung_up = true;
                c.hangup(now, &mut self.ep);
            }
        }
        self.flush();
    }

    fn run_until_finished(&mut self, limit: Duration) {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65_535];
        while !self.call.as_ref().is_some_and(IncomingCall::is_finished) {
            let now = Instant::now();
            assert!(now < end, "timed out; events so far: {:?}", self.events);
            let next = [
                self.ep.poll_timeout(),
                self.call.as_ref().and_then(IncomingCall::poll_timeout),
                Some(end),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(end);
            let wait = next
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait)).expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, src)) => {
                    let now = Instant::now();
                    self.ep.handle_datagram(now, src, &buf[..n]);
                    self.pump(now);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = Instant::now();
                    self.ep.handle_timeout(now);
                    if let Some(c) = self.call.as_mut() {
                        c.handle_timeout(now, &mut self.ep);
                    }
                    self.pump(now);
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

#[test]
fn sipp_caller_keys_info_digits_and_our_bye_ends_the_call() {
    if !support::have_program("sipp") {
        eprintln!("skipping: sipp not installed");
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let gate: SocketAddr = sock.local_addr().expect("local addr");
    let ep = Endpoint::new(EndpointConfig {
        kind: TrunkKind::Admin,
        local: gate,
        limits: Limits::default(),
        per_source_rate: 100,
        per_source_burst: 100,
        max_sources: 8,
        max_transactions: 32,
        queue_depth: 32,
        allow_sources: None,
        user_agent: "dialback/test".into(),
        rng_seed: 7,
    });
    let mut d = Driver {
        sock,
        ep,
        call: None,
        local: LocalMedia {
            addr: "127.0.0.1".parse().expect("ip"),
            rtp_port: 40000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
            ptime_ms: 20,
            session_id: 1,
            session_version: 1,
        },
        events: Vec::new(),
        hung_up: false,
    };
    let caller = Sipp::scenario("uac_call_info.xml")
        .var("from", "admin")
        .args(["-s", "gate"])
        .timeout(Duration::from_secs(20))
        .call(gate)
        .expect("sipp caller");

    d.run_until_finished(Duration::from_secs(20));
    let outcome = caller.wait();
    assert!(outcome.passed(), "{}", outcome.report());

    let keys: Vec<(char, Option<u32>)> = d
        .events
        .iter()
        .filter_map(|e| match e {
            IncomingEvent::Dtmf { digit, duration_ms } => Some((*digit, *duration_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        vec![('1', Some(160)), ('2', Some(160)), ('#', Some(160))]
    );
    assert_eq!(d.events.first(), Some(&IncomingEvent::Confirmed));
    assert_eq!(
        d.events.last(),
        Some(&IncomingEvent::Ended { by_remote: false })
    );
    let call = d.call.as_ref().expect("call");
    let media = call.media().expect("negotiated");
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(media.telephone_event_pt, Some(101));

    let ok = outcome
        .received()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE"))
        .expect("SIPp received our 200");
    assert!(ok.contains("m=audio 40000 RTP/AVP 0 101"), "{ok}");
    assert_eq!(outcome.received_requests("BYE").len(), 1);
}
