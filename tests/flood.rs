//! An OPTIONS flood from one source (SIPp, 20 s) leaves dialback's memory bounded and a
//! legitimate OPTIONS afterwards is still answered.

mod support;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::dialback::{options_request, Gate};

/// Peak resident set (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn options_flood_keeps_memory_bounded_and_service_alive() {
    let mut gate = Gate::start_standalone().expect("dialback starts");
    let pid = gate.pid().expect("pid");
    let before = peak_rss_kib(pid).expect("rss");
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options_flood.xml");
    let to = gate.user_addr();
    let dir = tempfile::tempdir().expect("tmp");
    // 5000/s for 20 s from one source: well above the per-source limit.
    let mut sipp = Command::new("sipp")
        .current_dir(dir.path())
        .args(["-sf"])
        .arg(&scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-r",
            "5000",
            "-rp",
            "1000",
            "-l",
            "100000",
        ])
        .args(["-m", "100000", "-timeout", "20s", "-nostdin", "-trace_err"])
        .arg(to.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp runs (install sip-tester)");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(Some(_)) = sipp.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = sipp.kill();
    let _ = sipp.wait();
    let flood_secs = started.elapsed().as_secs_f64();
    assert!(flood_secs >= 15.0, "the flood ran ({flood_secs:.1} s)");
    // Let the counters line (every 10 s) appear.
    std::thread::sleep(Duration::from_secs(11));
    let peak = peak_rss_kib(pid).expect("rss");
    println!("dialback peak RSS: before flood {before} KiB, after {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB stays under 64 MiB");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("t");
    sock.send_to(
        options_request("sip:gate@127.0.0.1", "after-flood").as_bytes(),
        to,
    )
    .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("answered after the flood");
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    let log = gate.log();
    let dropped: u64 = log
        .lines()
        .filter_map(|l| l.split("rate_dropped=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0);
    println!("rate-limited datagrams dropped: {dropped}");
    assert!(
        dropped > 10_000,
        "the per-source limit dropped the excess:\n{log}"
    );
    assert!(gate.is_running());
}
