//! Child-process plumbing for peers: own process group, output to a log file, group kill.
//!
//! Each peer is started in a new process group (`setpgid(0, 0)` through
//! [`CommandExt::process_group`]) so that killing the group also ends the workers a peer
//! forks (Kamailio's UDP receivers, timers, ctl process). Termination sends SIGTERM to the
//! group, waits a grace period, then SIGKILL: the `kill(1)` utility does the signalling because
//! the crate forbids `unsafe` code (no direct `libc::kill`).

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Grace period between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// How often `wait_timeout` polls the child.
const POLL: Duration = Duration::from_millis(20);
/// Lines of a peer's log shown in an error.
pub const LOG_TAIL_LINES: usize = 40;

/// Why a peer could not be started or queried.
///
/// `Debug` prints like `Display` so that a test returning `Result<(), PeerError>` shows the
/// peer's log tail readably.
#[derive(thiserror::Error)]
pub enum PeerError {
    #[error("{peer}: cannot spawn `{program}`: {source}")]
    Spawn {
        peer: &'static str,
        program: String,
        source: io::Error,
    },
    #[error("{peer}: {what}: {source}")]
    Io {
        peer: &'static str,
        what: String,
        source: io::Error,
    },
    #[error("{peer} exited early ({status}); log {log}:\n{log_tail}")]
    Exited {
        peer: &'static str,
        status: ExitStatus,
        log: PathBuf,
        log_tail: String,
    },
    #[error("{peer} not ready after {waited:?}; log {log}:\n{log_tail}")]
    NotReady {
        peer: &'static str,
        waited: Duration,
        log: PathBuf,
        log_tail: String,
    },
    #[error("{peer}: no port could be bound after {attempts} attempts; last log:\n{log_tail}")]
    PortsExhausted {
        peer: &'static str,
        attempts: usize,
        log_tail: String,
    },
    #[error("{peer}: `{command}` failed: {output}")]
    Control {
        peer: &'static str,
        command: String,
        output: String,
    },
}

impl fmt::Debug for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A running peer process, leader of its own process group. Dropping it kills the group.
pub struct PeerProcess {
    peer: &'static str,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl PeerProcess {
    /// Spawns `command` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(peer: &'static str, mut command: Command, log: &Path) -> Result<Self, PeerError> {
        let io_err = |what: &str, source| PeerError::Io {
            peer,
            what: format!("{what} {}", log.display()),
            source,
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io_err("open log", e))?;
        let err = out.try_clone().map_err(|e| io_err("clone log handle", e))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().map_err(|source| PeerError::Spawn {
            peer,
            program: command.get_program().to_string_lossy().into_owned(),
            source,
        })?;
        Ok(Self {
            peer,
            child,
            log: log.to_path_buf(),
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the peer's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// The exit status if the process has ended, without blocking.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// The error for "ended while we waited for it to become ready".
    pub fn exited_error(&self, status: ExitStatus) -> PeerError {
        PeerError::Exited {
            peer: self.peer,
            status,
            log: self.log.clone(),
            log_tail: self.log_tail(LOG_TAIL_LINES),
        }
    }

    /// SIGTERM to the group, up to [`TERM_GRACE`] to exit, then SIGKILL to the group (also
    /// when the leader already exited: its workers may linger). Idempotent.
    pub fn terminate(&mut self) {
        let group = format!("-{}", self.child.id());
        if self.try_exit().is_none() {
            signal_group("TERM", &group);
            if self.wait_timeout(TERM_GRACE).is_none() {
                signal_group("KILL", &group);
                self.exit = self.child.wait().ok();
            }
        }
        signal_group("KILL", &group);
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `Command` for `program` that dies with the test: when `setpriv` (util-linux) is installed the
/// peer gets SIGTERM as soon as the thread that started it ends (`PR_SET_PDEATHSIG`), so an
/// aborted `cargo test` (Ctrl-C, or a SIGKILLed test binary) leaves no peer behind even though
/// the peer sits in its own process group. Start peers from the test's own thread, not from
/// a helper thread that ends before the test does.
pub fn peer_command(program: &str) -> Command {
    if super::have_program("setpriv") {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "TERM", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn signal_group(signal: &str, group: &str) {
    // `--` so that the negative group id is not taken for an option. Failure means the group
    // is already gone, which is the goal.
    let _ = Command::new("kill")
        .args(["-s", signal, "--", group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
