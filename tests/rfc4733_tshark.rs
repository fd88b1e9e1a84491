//! Our RTP + RFC 4733 bytes against Wireshark's dissectors (Debian package `tshark`): the
//! packets of a key press, written to a pcap, must decode with the event, end bit, volume,
//! duration, marker and timestamps we meant, and without malformed-packet expert notes.
//! Skips with a note when tshark is not installed.

use std::process::Command;

use dialback::media::dtmf::Digit;
use dialback::media::rfc4733::{Sender, SenderConfig};
use dialback::media::rtp::{RtpHeader, Ssrc};

const PT_EVENT: u8 = 101;
const PORT: u16 = 40_000;

/// A classic pcap (LINKTYPE_RAW, IPv4) of UDP datagrams to `PORT`.
fn pcap(datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic, v2.4, tz 0, sigfigs 0, snaplen, LINKTYPE_RAW (101).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for (i, d) in datagrams.iter().enumerate() {
        let udp_len = 8 + d.len();
        let ip_len = 20 + udp_len;
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            2,
        ];
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        let csum = !(sum as u16);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        ip.extend_from_slice(&PORT.to_be_bytes());
        ip.extend_from_slice(&PORT.to_be_bytes());
        ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]); // UDP checksum not used
        ip.extend_from_slice(d);
        let ts_usec = (i as u32) * 20_000;
        out.extend_from_slice(&(ts_usec / 1_000_000).to_le_bytes());
        out.extend_from_slice(&(ts_usec % 1_000_000).to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
        out.extend_from_slice(&ip);
    }
    out
}

#[test]
fn tshark_decodes_our_telephone_events_as_sent() {
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed; skipping");
        return;
    }
    let cfg = SenderConfig {
        duration_samples: 1200,
        volume: 13,
        ..SenderConfig::default()
    };
    let packets: Vec<_> = Sender::new(Digit::Pound, 0xFFFF_FF00, cfg).collect();
    let datagrams: Vec<Vec<u8>> = packets
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut d = Vec::new();
            RtpHeader {
                marker: p.marker,
                payload_type: PT_EVENT,
                sequence: 65_534u16.wrapping_add(i as u16),
                timestamp: p.timestamp,
                ssrc: Ssrc(0x0BAD_CAFE),
            }
            .write(&p.event.to_bytes(), &mut d)
            .unwrap();
            d
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.pcap");
    std::fs::write(&file, pcap(&datagrams)).unwrap();

    let out = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-d", &format!("udp.port=={PORT},rtp")])
        .args(["-d", &format!("rtp.pt=={PT_EVENT},rtpevent")])
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "rtp.marker", "-e", "rtp.seq", "-e", "rtp.timestamp"])
        .args(["-e", "rtpevent.event_id", "-e", "rtpevent.end_of_event"])
        .args([
            "-e",
            "rtpevent.volume",
            "-e",
            "rtpevent.duration",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    eprintln!("{text}");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), packets.len(), "{text}");
    for (i, (row, p)) in rows.iter().zip(&packets).enumerate() {
        let marker = if p.marker { "1" } else { "0" };
        let end = if p.event.end { "1" } else { "0" };
        let expected = [
            marker.to_string(),
            65_534u16.wrapping_add(i as u16).to_string(),
            p.timestamp.to_string(),
            "11".to_string(),
            end.to_string(),
            "13".to_string(),
            p.event.duration.to_string(),
            String::new(), // no malformed-packet note
        ];
        for (k, want) in expected.iter().enumerate() {
            let got = row.get(k).copied().unwrap_or("");
            let got = match got {
                "True" => "1",
                "False" => "0",
                g => g,
            };
            assert_eq!(got, want, "field {k} of {row:?}");
        }
    }
}
