//! Packet captures on loopback with `dumpcap` and their analysis with `tshark` (Debian package
//! `tshark`; capturing needs root or the `wireshark` group's capabilities, as in CI).
//!
//! A [`Capture`] runs `dumpcap -i lo -f FILTER` (a BPF filter narrowing it to the test's own
//! ports, since other tests share `lo`) into a temp file; [`Capture::stop`] ends it and gives a
//! [`CaptureFile`] to query with display filters. Reading decodes RTP on any UDP port
//! (`rtp.heuristic_rtp`), in addition to the RTP streams tshark learns from the SDP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::process::{peer_command, PeerError, PeerProcess, LOG_TAIL_LINES};

const PEER: &str = "dumpcap";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running capture on `lo`.
pub struct Capture {
    process: PeerProcess,
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `lo` what matches the BPF `filter`; returns once dumpcap reports
    /// that it captures.
    pub fn start(filter: &str) -> Result<Self, PeerError> {
        let dir = tempfile::Builder::new()
            .prefix("capture-")
            .tempdir()
            .map_err(|source| PeerError::Io {
                peer: PEER,
                what: "create temp dir".to_owned(),
                source,
            })?;
        let file = dir.path().join("call.pcapng");
        let log = dir.path().join("dumpcap.log");
        let mut cmd = peer_command("dumpcap");
        cmd.args(["-i", "lo", "-f", filter, "-w"]).arg(&file);
        let mut process = PeerProcess::spawn(PEER, cmd, &log)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit() {
                return Err(process.exited_error(status));
            }
            if process.log_tail(LOG_TAIL_LINES).contains("Capturing on") {
                return Ok(Self { process, dir, file });
            }
            if Instant::now() >= deadline {
                return Err(PeerError::NotReady {
                    peer: PEER,
                    waited: READY_TIMEOUT,
                    log,
                    log_tail: process.log_tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the last packets reach the file, ends dumpcap (SIGTERM: it closes the file
    /// cleanly) and returns the capture.
    pub fn stop(mut self) -> CaptureFile {
        thread::sleep(Duration::from_millis(500));
        self.process.terminate();
        CaptureFile {
            _dir: self.dir,
            path: self.file,
        }
    }
}

/// A finished capture.
pub struct CaptureFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl CaptureFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `tshark -r FILE -Y FILTER -T fields -e F...`: one row per matching packet, one cell
    /// per field (several occurrences of a field joined by `,`).
    pub fn fields(&self, display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        let mut cmd = self.tshark();
        cmd.args(["-Y", display_filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = run(cmd);
        out.lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// How many packets match `display_filter`.
    pub fn count(&self, display_filter: &str) -> usize {
        self.fields(display_filter, &["frame.number"]).len()
    }

    /// Packets tshark could not decode cleanly: malformed, or with an expert note of severity
    /// error; as `frame: protocols: info` lines.
    pub fn decode_errors(&self) -> Vec<String> {
        self.fields(
            "_ws.malformed || _ws.expert.severity >= \"Error\"",
            &["frame.number", "frame.protocols", "_ws.col.Info"],
        )
        .into_iter()
        .map(|row| row.join(": "))
        .collect()
    }

    /// `tshark -z expert -q`: the expert information summary, for failure messages.
    pub fn expert_summary(&self) -> String {
        let mut cmd = self.tshark();
        cmd.args(["-q", "-z", "expert"]);
        run(cmd)
    }

    fn tshark(&self) -> Command {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r")
            .arg(&self.path)
            .args(["-o", "rtp.heuristic_rtp:TRUE"]);
        cmd
    }
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
