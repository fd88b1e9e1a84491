//! The callback call over a real socket: `OutgoingCall` + `Endpoint` (sans-IO) driven by a tiny
//! blocking UDP loop, through Kamailio (407 proxy challenge, record-routing, RFC 3261 §16) to a
//! SIPp phone (`tests/sipp/uas_answer.xml`: 180, 200, expects ACK then BYE). Proves the INVITE
//! is authenticated, the 2xx is ACKed along the route set and the local hangup's BYE ends the
//! dialog at the phone. Skips when the peers are not installed (fails under CI).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dialback::sip::call::{CallConfig, CallEvent, OnDiversion, OutgoingCall};
use dialback::sip::endpoint::{AllowRule, Endpoint, EndpointConfig, TrunkKind};
use dialback::sip::message::Limits;
use dialback::sip::transaction::Route;
use support::kamailio::Kamailio;
use support::sipp::Sipp;
use support::uac::{self, Register};

const SUBSCRIBERS: &[(&str, &str)] = &[("gate-out", "pw3"), ("1001", "phone-pw")];
const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn peers_installed() -> bool {
    let ok = ["kamailio", "kamcmd", "sipp"]
        .iter()
        .all(|p| support::have_program(p));
    if !ok {
        eprintln!("skipping: kamailio, kamcmd or sipp not installed");
    }
    ok
}

/// Runs the endpoint and the call on `sock` until `stop` says so or `limit` passes; returns
/// every call event seen.
struct Driver {
    sock: UdpSocket,
    ep: Endpoint,
    call: OutgoingCall,
    events: Vec<CallEvent>,
    /// Every datagram we sent, as text.
    sent: Vec<String>,
}

impl Driver {
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.sock.send_to(&t.bytes, t.route.addr).expect("send");
            self.sent
                .push(String::from_utf8_lossy(&t.bytes).into_owned());
        }
    }

    fn pump_events(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            self.call.handle_event(now, &mut self.ep, &ev);
        }
        while let Some(e) = self.call.poll_event() {
            self.events.push(e);
        }
        self.flush();
    }

    /// Keep serving (retransmissions, timers) for `span`, as a call in progress would.
    fn run_for(&mut self, span: Duration) {
        let until = Instant::now() + span;
        self.run_until(span + Duration::from_secs(1), |_| Instant::now() >= until);
    }

    fn run_until(&mut self, limit: Duration, stop: impl Fn(&[CallEvent]) -> bool) {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65_535];
        while !stop(&self.events) {
            let now = Instant::now();
            assert!(now < end, "timed out; events so far: {:?}", self.events);
            let next = [self.ep.poll_timeout(), self.call.poll_timeout(), Some(end)]
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
                    self.pump_events(now);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = Instant::now();
                    self.ep.handle_timeout(now);
                    self.call.handle_timeout(now, &mut self.ep);
                    self.pump_events(now);
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
    }
}

#[test]
fn callback_through_kamailio_is_answered_and_ended_cleanly() {
    if !peers_installed() {
        return;
    }
    let k = Kamailio::start(SUBSCRIBERS).expect("start kamailio");
    let phone = Sipp::scenario("uas_answer.xml")
        .timeout(Duration::from_secs(20))
        .serve()
        .expect("phone");
    let reg = Register::new(
        k.sip_addr(),
        "1001",
        "phone-pw",
        &format!("sip:1001@127.0.0.1:{}", phone.port()),
    );
    assert_eq!(uac::register(&reg).expect("register").status, 200);

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local: SocketAddr = sock.local_addr().expect("local addr");
    let proxy = k.sip_addr();
    let ep = Endpoint::new(EndpointConfig {
        kind: TrunkKind::Originate,
        local,
        limits: Limits::default(),
        per_source_rate: 100,
        per_source_burst: 100,
        max_sources: 8,
        max_transactions: 32,
        queue_depth: 32,
        // The originate trunk talks to its proxy only.
        allow_sources: Some(vec![AllowRule::Addr(proxy)]),
        user_agent: "dialback/test".into(),
        rng_seed: 42,
    });
    let cfg = CallConfig {
        target_uri: format!("sip:1001@127.0.0.1:{}", proxy.port()),
        from_uri: format!("sip:gate-out@127.0.0.1:{}", proxy.port()),
        contact_uri: format!("sip:gate-out@{local}"),
        auth_username: "gate-out".into(),
        password: "pw3".into(),
        sdp_offer: SDP.to_vec(),
        ring_timeout: Duration::from_secs(10),
        on_diversion: OnDiversion::Abort,
    };
    let mut d = Driver {
        sock,
        ep,
        call: OutgoingCall::new(cfg, format!("cb-test@{local}"), "gatetag1".into()),
        events: Vec::new(),
        sent: Vec::new(),
    };
    let route = Route {
        addr: proxy,
        conn: None,
    };
    d.call
        .start(Instant::now(), &mut d.ep, route)
        .expect("start");
    d.flush();

    d.run_until(Duration::from_secs(10), |ev| {
        ev.iter()
            .any(|e| matches!(e, CallEvent::Answered { .. } | CallEvent::Failed { .. }))
    });
    let answered = d.events.iter().find_map(|e| match e {
        CallEvent::Answered { remote_sdp } => Some(remote_sdp.clone()),
        _ => None,
    });
    let remote_sdp = answered.unwrap_or_else(|| panic!("{:?}\n{}", d.events, k.log_tail(30)));
    assert!(String::from_utf8_lossy(&remote_sdp).contains("telephone-event"));
    assert!(d.events.contains(&CallEvent::Ringing), "{:?}", d.events);
    // In-dialog requests go through the proxy that record-routed the INVITE.
    assert!(
        d.call
            .next_hop_uri()
            .is_some_and(|u| u.contains(&proxy.port().to_string())),
        "{:?}",
        d.call.next_hop_uri()
    );

    // Hold the call a moment (like `uac_call.xml -d 200`): through Kamailio's parallel
    // workers an ACK and a BYE sent back to back may overtake each other.
    d.run_for(Duration::from_millis(200));
    let now = Instant::now();
    d.call.hangup(now, &mut d.ep);
    d.flush();
    d.run_until(Duration::from_secs(10), |ev| {
        ev.iter()
            .any(|e| matches!(e, CallEvent::Ended { .. } | CallEvent::Failed { .. }))
    });
    assert_eq!(
        d.events.last(),
        Some(&CallEvent::Ended { by_remote: false })
    );

    // Kamailio challenged with 407: the endpoint ACKed it, the call re-sent with credentials.
    let invites: Vec<&String> = d.sent.iter().filter(|m| m.starts_with("INVITE ")).collect();
    assert_eq!(invites.len(), 2, "{:?}", d.sent);
    assert!(invites[1].contains("Proxy-Authorization: Digest"));
    assert_eq!(d.sent.iter().filter(|m| m.starts_with("ACK ")).count(), 2);

    let phone = phone.wait();
    assert!(phone.passed(), "{}", phone.report());
    let invite = &phone.received_requests("INVITE")[0];
    assert!(invite.contains("Record-Route:"), "{invite}");
    assert_eq!(phone.received_requests("BYE").len(), 1);
}
