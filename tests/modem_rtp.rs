//! V.22bis over real RTP on loopback: our calling modem (the gate's callback side) and our
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
