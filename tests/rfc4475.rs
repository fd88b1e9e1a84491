//! RFC 4475 torture messages against dialback: first through the sans-IO endpoint, then over
//! real UDP and TCP sockets to a running `dialback run`. Expected outcomes follow
//! `tests/data/rfc4475/README.md` (copied from the shared corpus).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dialback::sip::endpoint::{Endpoint, EndpointConfig, Event, TrunkKind};
use dialback::sip::message::{parse_datagram, Limits};

/// What a UAS must do with a message.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Exactly this status code.
    Code(u16),
    /// One of these codes (the RFC allows leniency).
    OneOf(&'static [u16]),
    /// A normal answer: any response that is not 400 (valid message).
    Normal,
    /// No response (responses are dropped; unparseable messages too).
    Silence,
}

const TABLE: &[(&str, Expect)] = &[
    // §3.1.1 valid messages
    ("wsinv", Expect::Normal),
    ("intmeth", Expect::Code(501)),
    ("esc01", Expect::Normal),
    ("escnull", Expect::Code(405)),
    ("esc02", Expect::Code(501)),
    ("lwsdisp", Expect::Code(200)),
    ("longreq", Expect::Normal),
    ("dblreq", Expect::Code(405)),
    ("semiuri", Expect::Code(200)),
    ("transports", Expect::Code(200)),
    ("mpart01", Expect::Normal),
    ("unreason", Expect::Silence),
    ("noreason", Expect::Silence),
    // §3.1.2 invalid messages
    ("badinv01", Expect::Code(400)),
    ("clerr", Expect::Code(400)),
    ("ncl", Expect::Code(400)),
    ("scalar02", Expect::Code(400)),
    ("scalarlg", Expect::Silence),
    ("quotbal", Expect::Code(400)),
    ("ltgtruri", Expect::Code(400)),
    ("lwsruri", Expect::Code(400)),
    ("lwsstart", Expect::Code(400)),
    ("trws", Expect::Code(400)),
    ("escruri", Expect::Code(400)),
    ("baddate", Expect::Normal),
    ("regbadct", Expect::OneOf(&[400, 405])),
    ("badaspec", Expect::OneOf(&[200, 400])),
    ("baddn", Expect::OneOf(&[200, 400])),
    ("badvers", Expect::Code(505)),
    ("mismatch01", Expect::Code(400)),
    ("mismatch02", Expect::Code(400)),
    ("bigcode", Expect::Silence),
    // §3.2 transaction layer
    ("badbranch", Expect::Code(200)),
    // §3.3 application layer
    ("insuf", Expect::Code(400)),
    ("unkscm", Expect::Code(416)),
    ("novelsc", Expect::Code(416)),
    ("unksm2", Expect::Code(405)),
    ("bext01", Expect::Code(420)),
    ("invut", Expect::Code(415)),
    ("regaut01", Expect::Code(405)),
    ("multi01", Expect::Code(400)),
    ("mcl01", Expect::Code(400)),
    ("bcast", Expect::Silence),
    ("zeromf", Expect::Code(200)),
    ("cparam01", Expect::Code(405)),
    ("cparam02", Expect::Code(405)),
    ("regescrt", Expect::Code(405)),
    ("sdp01", Expect::Code(406)),
    // §3.4 backward compatibility
    ("inv2543", Expect::Normal),
];

/// On a stream, messages whose Content-Length cannot frame them never complete: the
/// connection is closed (or waits) without an answer (RFC 3261 §18.3).
/// (`baddn` has no empty line after its headers: on a stream it never ends.)
const STREAM_UNFRAMEABLE: &[&str] = &["clerr", "ncl", "mcl01", "inv2543", "baddn"];

fn corpus(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/rfc4475")
        .join(format!("{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn check(name: &str, expect: Expect, got: Option<u16>) -> Result<(), String> {
    let ok = match (expect, got) {
        (Expect::Code(c), Some(g)) => c == g,
        (Expect::OneOf(cs), Some(g)) => cs.contains(&g),
        (Expect::Normal, Some(g)) => g != 400 && (200..700).contains(&g),
        (Expect::Silence, None) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: expected {expect:?}, got {got:?}"))
    }
}

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        kind: TrunkKind::User,
        local: "127.0.0.1:5070".parse().expect("addr"),
        limits: Limits::default(),
        per_source_rate: 10_000,
        per_source_burst: 10_000,
        max_sources: 16,
        max_transactions: 64,
        queue_depth: 64,
        allow_sources: None,
        user_agent: "dialback/test".into(),
        rng_seed: 1,
    })
}

#[test]
fn every_torture_message_gets_the_rfc_outcome_from_the_endpoint() {
    assert_eq!(TABLE.len(), 49, "the corpus has 49 messages");
    let mut errors = Vec::new();
    let mut ep = endpoint();
    let src: SocketAddr = "192.0.2.7:5060".parse().expect("addr");
    for (name, expect) in TABLE {
        ep.handle_datagram(Instant::now(), src, &corpus(name));
        // Requests the endpoint hands up get the application's "not now" answer.
        while let Some(ev) = ep.poll_event() {
            if let Event::Request { id, msg, .. } = ev {
                ep.respond(
                    Instant::now(),
                    id,
                    &msg,
                    480,
                    "Temporarily Unavailable",
                    &Default::default(),
                );
            }
        }
        let got = ep.poll_transmit().map(|t| {
            parse_datagram(&t.bytes, &Limits::default())
                .expect("our response parses")
                .status()
                .expect("is a response")
        });
        if let Err(e) = check(name, *expect, got) {
            errors.push(e);
        }
        assert!(ep.poll_transmit().is_none(), "{name}: one answer only");
    }
    assert!(errors.is_empty(), "mismatches:\n{}", errors.join("\n"));
}

#[test]
fn bext01_answer_lists_the_unsupported_extensions() {
    let mut ep = endpoint();
    ep.handle_datagram(
        Instant::now(),
        "192.0.2.7:5060".parse().expect("a"),
        &corpus("bext01"),
    );
    let t = ep.poll_transmit().expect("answer");
    let text = String::from_utf8_lossy(&t.bytes);
    assert!(
        text.contains("Unsupported: nothingSupportsThis, nothingSupportsThisEither"),
        "{text}"
    );
}

/// Send a datagram and wait for the response that carries its Call-ID (earlier INVITEs'
/// final answers are retransmitted until ACKed, RFC 3261 §17.2.1, so others may arrive).
fn udp_status(sock: &UdpSocket, to: SocketAddr, data: &[u8], wait: Duration) -> Option<u16> {
    let call_id = parse_datagram(data, &Limits::default())
        .ok()
        .and_then(|m| m.header("call-id").map(str::to_string));
    sock.send_to(data, to).expect("send");
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        let Ok(resp) = parse_datagram(&buf[..n], &Limits::default()) else {
            continue;
        };
        if call_id.is_none() || resp.header("call-id").map(str::to_string) == call_id {
            return resp.status();
        }
    }
}

fn tcp_status(to: SocketAddr, data: &[u8], wait: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).expect("connect");
    s.write_all(data).expect("write");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    parse_datagram(&got, &Limits::default()).ok()?.status()
}

#[test]
fn running_dialback_answers_the_corpus_over_udp_and_tcp_and_survives() {
    let mut gate = support::dialback::Gate::start_standalone().expect("dialback starts");
    let to = gate.user_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut errors = Vec::new();
    for (name, expect) in TABLE {
        let wait = match expect {
            Expect::Silence => Duration::from_millis(300),
            _ => Duration::from_secs(2),
        };
        let got = udp_status(&sock, to, &corpus(name), wait);
        if let Err(e) = check(name, *expect, got) {
            errors.push(format!("udp {e}"));
        }
    }
    // Requests over TCP (responses on a stream are dropped just the same), to a fresh
    // instance: the UDP copies' INVITE transactions are still alive, and a copy of the same
    // INVITE would rightly be absorbed as a retransmission (RFC 3261 §17.2.3).
    let mut tcp_gate = support::dialback::Gate::start_standalone().expect("dialback starts");
    let tcp_to = tcp_gate.user_addr();
    for (name, expect) in TABLE {
        let data = corpus(name);
        if data.starts_with(b"SIP/") {
            continue;
        }
        let expect = if STREAM_UNFRAMEABLE.contains(name) {
            Expect::Silence
        } else {
            *expect
        };
        let wait = match expect {
            Expect::Silence => Duration::from_millis(500),
            _ => Duration::from_secs(2),
        };
        let got = tcp_status(tcp_to, &data, wait);
        if let Err(e) = check(name, expect, got) {
            errors.push(format!("tcp {e}"));
        }
    }
    let options = support::dialback::options_request("sip:gate@127.0.0.1", "after-torture");
    assert_eq!(
        udp_status(&sock, to, options.as_bytes(), Duration::from_secs(2)),
        Some(200),
        "dialback still answers after the corpus"
    );
    assert!(gate.is_running(), "dialback process is alive");
    assert!(tcp_gate.is_running(), "dialback (TCP run) is alive");
    let tcp_options = support::dialback::options_request("sip:gate@127.0.0.1", "after-tcp");
    assert_eq!(
        tcp_status(tcp_to, tcp_options.as_bytes(), Duration::from_secs(2)),
        Some(200)
    );
    assert!(errors.is_empty(), "mismatches:\n{}", errors.join("\n"));
}
