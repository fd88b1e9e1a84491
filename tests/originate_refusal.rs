//! The originate trunk takes nothing in (DESIGN.md, "The three trunks"; patent [0022]):
//! requests from the proxy address get 403, requests from anywhere else get nothing, and none
//! reaches the application.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::json;
use support::dialback::{free_port, Gate};

fn request(method: &str, i: usize, port: u16) -> String {
    format!(
        "{method} sip:gate-out@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKorig{i}\r\nMax-Forwards: 70\r\nFrom: <sip:intruder@127.0.0.1>;tag=x{i}\r\nTo: <sip:gate-out@127.0.0.1>\r\nCall-ID: orig-{i}\r\nCSeq: 1 {method}\r\nContact: <sip:intruder@127.0.0.1:{port}>\r\nContent-Length: 0\r\n\r\n"
    )
}

fn status(sock: &UdpSocket, wait: Duration) -> Option<u16> {
    sock.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 8192];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

#[test]
fn originate_trunk_refuses_everything_from_its_proxy_and_ignores_everyone_else() {
    let proxy = UdpSocket::bind("127.0.0.1:0").expect("bind proxy");
    let proxy_port = proxy.local_addr().expect("addr").port();
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind stranger");
    let dialplan = json!({
        "trunks": {
            "user": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-user@127.0.0.1" },
            "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false, "aor": "sip:gate-admin@127.0.0.1" },
            "originate": { "listen": format!("127.0.0.1:{}", free_port()),
                           "proxy": format!("sip:127.0.0.1:{proxy_port}"),
                           "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                           "password_env": "T_ORIG_PW" }
        }
    });
    let mut gate = Gate::start(dialplan, &[("T_ORIG_PW", "pw")]).expect("dialback starts");
    let to = gate.originate_addr();
    let methods = [
        "INVITE",
        "MESSAGE",
        "OPTIONS",
        "REGISTER",
        "SUBSCRIBE",
        "INFO",
    ];
    for (i, m) in methods.iter().enumerate() {
        proxy
            .send_to(request(m, i, proxy_port).as_bytes(), to)
            .expect("send");
        assert_eq!(
            status(&proxy, Duration::from_secs(2)),
            Some(403),
            "{m} from the proxy"
        );
        stranger
            .send_to(request(m, 100 + i, proxy_port).as_bytes(), to)
            .expect("send");
        assert_eq!(
            status(&stranger, Duration::from_millis(400)),
            None,
            "{m} from a stranger"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = gate.log();
    let refusals = log
        .matches("originate trunk refused inbound request")
        .count();
    assert_eq!(refusals, methods.len(), "one warn line per refusal:\n{log}");
    assert!(
        !log.contains("request src="),
        "nothing reached the application:\n{log}"
    );
    assert!(gate.is_running());
}
