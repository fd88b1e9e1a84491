//! Modems over real RTP on loopback (V.22bis, V.21, Bell 103, and the fallback between them): our calling modem (the gate's callback side) and our
//! answering modem (the administrator's side) each run as a runtime task on its own UDP
//! socket, through G.711 and the jitter buffer; they train to 2400 bit/s and carry data both
//! ways exactly.

use std::sync::Arc;
use std::time::Duration;

use dialback::media::g711::Law;
use dialback::modem::v22bis::{Rate, Role};
use dialback::runtime::modem_media::{self, LineEvent, LineParams};
use tokio::net::UdpSocket;

async fn pair(law: Law) -> (modem_media::ModemLine, modem_media::ModemLine) {
    pair_with(law, dialback::runtime::modem_media::LineModem::V22bis).await
}

async fn pair_with(
    law: Law,
    kind: dialback::runtime::modem_media::LineModem,
) -> (modem_media::ModemLine, modem_media::ModemLine) {
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let params = |remote, role| LineParams {
        remote,
        law,
        payload_type: law.payload_type(),
        modem: kind,
        role,
        max_rate: Rate::R2400,
        tx_level_dbm0: -13.0,
        jitter: Duration::from_millis(60),
        rtp_timeout: None,
    };
    let caller = modem_media::spawn(
        a.clone(),
        params(b.local_addr().expect("addr"), Role::Caller),
    )
    .expect("caller");
    let answerer = modem_media::spawn(
        b.clone(),
        params(a.local_addr().expect("addr"), Role::Answerer),
    )
    .expect("answerer");
    (caller, answerer)
}

async fn connected(line: &mut modem_media::ModemLine) -> u32 {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), line.events.recv()).await {
            Ok(Some(LineEvent::Connected { rate_bps })) => return rate_bps,
            Ok(Some(_)) => continue,
            other => panic!("no CONNECT: {other:?}"),
        }
    }
}

async fn receive(line: &mut modem_media::ModemLine, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), line.events.recv()).await {
            Ok(Some(LineEvent::Data(d))) => got.extend_from_slice(&d),
            Ok(Some(LineEvent::CarrierLost)) => panic!("carrier lost after {} bytes", got.len()),
            Ok(Some(_)) => {}
            other => panic!("line ended after {} bytes: {other:?}", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v22bis_trains_to_2400_over_rtp_and_carries_data_both_ways() {
    for law in [Law::Ulaw, Law::Alaw] {
        let (mut caller, mut answerer) = pair(law).await;
        assert_eq!(connected(&mut caller).await, 2400, "{law:?}");
        assert_eq!(connected(&mut answerer).await, 2400, "{law:?}");
        let down: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let up: Vec<u8> = b"login: 1001\r\nPIN: \r\nstatus\r\n".repeat(8);
        for chunk in down.chunks(64) {
            caller.tx.send(chunk.to_vec()).await.expect("caller tx");
        }
        for chunk in up.chunks(64) {
            answerer.tx.send(chunk.to_vec()).await.expect("answerer tx");
        }
        assert_eq!(
            receive(&mut answerer, down.len()).await,
            down,
            "{law:?} caller → answerer"
        );
        assert_eq!(
            receive(&mut caller, up.len()).await,
            up,
            "{law:?} answerer → caller"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_and_bell103_carry_data_over_rtp() {
    use dialback::runtime::modem_media::LineModem;
    for kind in [LineModem::V21, LineModem::Bell103] {
        let (mut caller, mut answerer) = pair_with(Law::Ulaw, kind).await;
        assert_eq!(connected(&mut caller).await, 300, "{kind:?}");
        assert_eq!(connected(&mut answerer).await, 300, "{kind:?}");
        let msg = b"login: 1001\r\n".to_vec();
        caller.tx.send(msg.clone()).await.expect("tx");
        assert_eq!(receive(&mut answerer, msg.len()).await, msg, "{kind:?}");
    }
}

/// The gate's link tries the dialplan's modulations in order: an answerer that speaks only
/// V.21 (ANS, then channel 2) does not answer the V.22bis handshake, so the caller falls back
/// on the same call and both ends connect at 300 bit/s, within the default 20 s
/// `connect_timeout_s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_falls_back_from_v22bis_to_v21_when_the_answerer_speaks_only_v21() {
    use dialback::modem::link::Modulation;
    use dialback::runtime::modem_media::LineModem;
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let params = |remote, role, modem| LineParams {
        remote,
        law: Law::Alaw,
        payload_type: Law::Alaw.payload_type(),
        modem,
        role,
        max_rate: Rate::R2400,
        tx_level_dbm0: -13.0,
        jitter: Duration::from_millis(60),
        rtp_timeout: None,
    };
    let started = std::time::Instant::now();
    let mut caller = modem_media::spawn_link(
        a.clone(),
        params(
            b.local_addr().expect("addr"),
            Role::Caller,
            LineModem::V22bis,
        ),
        &[Modulation::V22bis, Modulation::V21],
    )
    .expect("caller");
    let mut answerer = modem_media::spawn(
        b.clone(),
        params(
            a.local_addr().expect("addr"),
            Role::Answerer,
            LineModem::V21,
        ),
    )
    .expect("answerer");
    assert_eq!(caller.modulation(), Modulation::V22bis, "tried first");
    // The first event is CONNECT: nothing (no carrier loss, no data) before it.
    let rate = match tokio::time::timeout(Duration::from_secs(20), caller.events.recv())
        .await
        .expect("the caller connects within connect_timeout_s")
    {
        Some(LineEvent::Connected { rate_bps }) => rate_bps,
        other => panic!("caller: {other:?}"),
    };
    assert_eq!(rate, 300);
    assert_eq!(caller.modulation(), Modulation::V21);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connected(&mut answerer).await, 300);
    let msg = b"login: ".to_vec();
    caller.tx.send(msg.clone()).await.expect("tx");
    assert_eq!(receive(&mut answerer, msg.len()).await, msg);
    let reply = b"1001\r".to_vec();
    answerer.tx.send(reply.clone()).await.expect("tx");
    assert_eq!(receive(&mut caller, reply.len()).await, reply);
}
