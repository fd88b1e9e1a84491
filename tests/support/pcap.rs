//! Classic pcap files (libpcap format 2.4, microsecond stamps) of UDP datagrams in Ethernet /
//! IPv4 frames (LINKTYPE_ETHERNET), the form SIPp's `play_pcap_audio` reads: it takes the UDP
//! header and payload of each frame, keeps the payload (RTP header included) as it is, sends it
//! to the media address of the far end's SDP, and paces by the frame stamps.

use std::time::Duration;

/// LINKTYPE_ETHERNET (DLT_EN10MB).
const LINKTYPE_ETHERNET: u32 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;

/// One UDP datagram and when it was "captured", from the start of the file.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub at: Duration,
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
    pub payload: Vec<u8>,
}

/// The bytes of a pcap file holding `datagrams` in order.
pub fn udp_pcap(datagrams: &[Datagram]) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic (stamps in µs), version 2.4, GMT offset 0, accuracy 0, snaplen.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, d) in datagrams.iter().enumerate() {
        let frame = ethernet_frame(d, i as u16);
        let secs = d.at.as_secs() as u32;
        let usecs = d.at.subsec_micros();
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&usecs.to_le_bytes());
        // Captured length = original length: SIPp refuses truncated frames.
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

/// Ethernet II (locally administered MACs) + IPv4 (RFC 791, checksummed) + UDP (RFC 768,
/// checksummed over the pseudo-header).
fn ethernet_frame(d: &Datagram, ip_id: u16) -> Vec<u8> {
    let udp_len = 8 + d.payload.len();
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
    ip.extend_from_slice(&ip_id.to_be_bytes());
    ip.extend_from_slice(&[0x40, 0, 64, IPPROTO_UDP, 0, 0]);
    ip.extend_from_slice(&d.src.0);
    ip.extend_from_slice(&d.dst.0);
    let sum = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&d.src.1.to_be_bytes());
    udp.extend_from_slice(&d.dst.1.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d.payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&d.src.0);
    pseudo.extend_from_slice(&d.dst.0);
    pseudo.extend_from_slice(&[0, IPPROTO_UDP]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    let mut sum = checksum(&udp, sum_words(&pseudo));
    if sum == 0 {
        sum = 0xFFFF; // RFC 768: a computed zero is sent as all ones.
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    f
}

fn sum_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// RFC 1071 ones' complement checksum of `bytes`, starting from `initial`.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial + sum_words(bytes);
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}
