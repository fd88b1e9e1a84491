//! SIPp scenarios from `tests/sipp/` run as a server (UAS on a free port) or as a client.
//!
//! One [`Sipp`] builder for both roles. Every run binds only 127.0.0.1 (`-i`, `-bind_local`,
//! control socket on a free port of 127.0.0.1 via `-ci`/`-cp`), has a global timeout
//! (`-timeout N -timeout_error`), reads no stdin (`-nostdin`), and logs messages and
//! unexpected events to files in its own temp dir (`-trace_msg`, `-trace_err`). The exit code is
//! SIPp's: 0 = every call passed, 1 = a call failed, 97/99/255 = aborted, no call, fatal or
//! global timeout.
//!
//! A server is ready when its UDP port is taken; a server that dies at once because another
//! process grabbed the port is restarted on a new one.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::ports;
use super::process::{log_tail, peer_command, PeerError, PeerProcess, LOG_TAIL_LINES};

const PEER: &str = "sipp";
/// Default global timeout of a run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to bind its port.
const BIND_TIMEOUT: Duration = Duration::from_secs(5);
const START_ATTEMPTS: usize = 5;

/// A SIPp invocation being built.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    vars: Vec<(String, String)>,
    args: Vec<String>,
    timeout: Duration,
    calls: u32,
    cwd: Option<PathBuf>,
}

impl Sipp {
    /// `name` is a file in `tests/sipp/` (`"reg_407.xml"`) or a path.
    pub fn scenario(name: &str) -> Self {
        let in_dir = scenario_dir().join(name);
        let scenario = if in_dir.is_file() {
            in_dir
        } else {
            PathBuf::from(name)
        };
        Self {
            scenario,
            vars: Vec::new(),
            args: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            calls: 1,
            cwd: None,
        }
    }

    /// Registrar scenario (`reg_*.xml`) expecting `user` / `password`.
    pub fn registrar(name: &str, user: &str, password: &str) -> Self {
        Self::scenario(name)
            .var("user", user)
            .var("password", password)
    }

    /// `-set name value`: a `<Global variables=...>` of the scenario.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Any other SIPp arguments, e.g. `["-s", "1001", "-au", "gate-out", "-ap", "pw3"]`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Global timeout (`-timeout`); the run fails when it is reached.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run SIPp in `dir` instead of its own temp dir (files a scenario names relatively, such
    /// as `play_pcap_audio`, are found there); logs still go to the temp dir.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Number of calls before SIPp exits (`-m`, default 1).
    pub fn calls(mut self, calls: u32) -> Self {
        self.calls = calls;
        self
    }

    /// Starts as a server on a free UDP port of 127.0.0.1; returns once the port is bound.
    pub fn serve(self) -> Result<SippRun, PeerError> {
        let mut last_tail = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut run = self.spawn(port, None)?;
            match run.wait_bound() {
                Ok(()) => return Ok(run),
                Err(PeerError::Exited { log_tail, .. }) if is_bind_failure(&log_tail) => {
                    last_tail = log_tail;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PeerError::PortsExhausted {
            peer: PEER,
            attempts: START_ATTEMPTS,
            log_tail: last_tail,
        })
    }

    /// Starts as a client sending to `remote` from a free port; runs in the background until
    /// [`SippRun::wait`].
    pub fn call(self, remote: SocketAddr) -> Result<SippRun, PeerError> {
        let port = free_port()?;
        self.spawn(port, Some(remote))
    }

    /// [`Self::call`] and wait for the outcome.
    pub fn run_call(self, remote: SocketAddr) -> Result<SippOutcome, PeerError> {
        Ok(self.call(remote)?.wait())
    }

    fn spawn(&self, port: u16, remote: Option<SocketAddr>) -> Result<SippRun, PeerError> {
        let dir = tempfile::Builder::new()
            .prefix("sipp-")
            .tempdir()
            .map_err(|source| PeerError::Io {
                peer: PEER,
                what: "create temp dir".to_owned(),
                source,
            })?;
        let control_port = free_port()?;
        let mut cmd = peer_command("sipp");
        if let Some(remote) = remote {
            cmd.arg(remote.to_string());
        }
        cmd.arg("-sf")
            .arg(&self.scenario)
            .args(["-i", "127.0.0.1", "-bind_local", "-ci", "127.0.0.1"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-cp")
            .arg(control_port.to_string())
            .arg("-m")
            .arg(self.calls.to_string())
            .arg("-timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .args(["-timeout_error", "-nostdin", "-trace_msg", "-trace_err"])
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .current_dir(self.cwd.as_deref().unwrap_or(dir.path()));
        for (name, value) in &self.vars {
            cmd.arg("-set").arg(name).arg(value);
        }
        cmd.args(&self.args);
        let screen = dir.path().join("screen.log");
        let process = PeerProcess::spawn(PEER, cmd, &screen)?;
        Ok(SippRun {
            process,
            port,
            dir,
            timeout: self.timeout,
        })
    }
}

/// A running SIPp.
pub struct SippRun {
    process: PeerProcess,
    port: u16,
    dir: tempfile::TempDir,
    timeout: Duration,
}

impl SippRun {
    /// Where this SIPp listens (`127.0.0.1:PORT`): point the system under test here.
    pub fn addr(&self) -> SocketAddr {
        ports::loopback(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `sip:127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits for SIPp to end (its own global timeout plus a margin, then it is killed) and
    /// collects exit code and logs.
    pub fn wait(mut self) -> SippOutcome {
        let status = self
            .process
            .wait_timeout(self.timeout + Duration::from_secs(5));
        if status.is_none() {
            self.process.terminate();
        }
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        SippOutcome {
            exit_code: status.and_then(|s| s.code()),
            messages: read("messages.log"),
            errors: read("errors.log"),
            screen_tail: log_tail(&self.dir.path().join("screen.log"), LOG_TAIL_LINES),
        }
    }

    fn wait_bound(&mut self) -> Result<(), PeerError> {
        let deadline = Instant::now() + BIND_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit() {
                return Err(self.process.exited_error(status));
            }
            if ports::udp_port_in_use(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PeerError::NotReady {
                    peer: PEER,
                    waited: BIND_TIMEOUT,
                    log: self.process.log_path().to_path_buf(),
                    log_tail: self.process.log_tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How a SIPp run ended.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    /// SIPp's exit code; `None` when it was killed.
    pub exit_code: Option<i32>,
    /// The `-trace_msg` log: every message sent and received.
    pub messages: String,
    /// The `-trace_err` log: unexpected messages, failed checks, timeouts.
    pub errors: String,
    /// The end of SIPp's screen output (statistics).
    pub screen_tail: String,
}

impl SippOutcome {
    /// True iff every call of the scenario passed (exit code 0).
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Every message SIPp received, in order, as text.
    pub fn received(&self) -> Vec<String> {
        self.logged_messages("message received")
    }

    /// Every message SIPp sent, in order, as text.
    pub fn sent(&self) -> Vec<String> {
        self.logged_messages("message sent")
    }

    /// The received requests with this method.
    pub fn received_requests(&self, method: &str) -> Vec<String> {
        let prefix = format!("{method} ");
        self.received()
            .into_iter()
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }

    /// Checks the digest credentials (`Authorization` or `Proxy-Authorization`) of every
    /// received `method` request that carries them against `password` (RFC 7616 §3.4).
    /// Errors when none carries credentials or one does not verify.
    pub fn verify_digest(&self, method: &str, password: &str) -> Result<usize, String> {
        let mut checked = 0;
        for request in self.received_requests(method) {
            let Some(credentials) = header(&request, "Authorization")
                .or_else(|| header(&request, "Proxy-Authorization"))
            else {
                continue;
            };
            let body = request.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            super::digest::verify(&credentials, method, password, body.as_bytes())
                .map_err(|e| format!("{e:?} in\n{request}"))?;
            checked += 1;
        }
        if checked == 0 {
            return Err(format!(
                "no {method} with credentials received:\n{}",
                self.messages
            ));
        }
        Ok(checked)
    }

    /// A readable summary for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "sipp exit code {:?}\n--- errors ---\n{}\n--- messages ---\n{}\n--- screen ---\n{}",
            self.exit_code, self.errors, self.messages, self.screen_tail
        )
    }

    fn logged_messages(&self, marker: &str) -> Vec<String> {
        // Entries look like: "---...--- DATE\nUDP message received [N] bytes :\n\nMESSAGE".
        let mut out = Vec::new();
        for entry in self
            .messages
            .split("\n-----------------------------------------------")
        {
            let mut lines = entry.splitn(3, '\n');
            let _stamp = lines.next();
            let Some(kind) = lines.next() else { continue };
            if !kind.contains(marker) {
                continue;
            }
            let text = lines
                .next()
                .unwrap_or_default()
                .trim_start_matches(['\r', '\n']);
            out.push(normalise_line_ends(text.trim_end()));
        }
        out
    }
}

/// The value of the first header `name` (case-insensitive) in a message.
pub fn header(message: &str, name: &str) -> Option<String> {
    message
        .split("\r\n\r\n")
        .next()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

/// `tests/sipp/`.
pub fn scenario_dir() -> PathBuf {
    super::repo_root().join("tests/sipp")
}

/// SIPp logs messages with `\n` or `\r\n`; give them back with `\r\n` as on the wire.
fn normalise_line_ends(text: &str) -> String {
    let mut out = text.replace("\r\n", "\n").replace('\n', "\r\n");
    if !out.contains("\r\n\r\n") {
        out.push_str("\r\n\r\n");
    }
    out
}

fn free_port() -> Result<u16, PeerError> {
    ports::free_udp_port().map_err(|source| PeerError::Io {
        peer: PEER,
        what: "pick a free port".to_owned(),
        source,
    })
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("bind") || log.contains("Address already in use")
}
