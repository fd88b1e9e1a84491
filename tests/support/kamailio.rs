//! Kamailio as the test PBX: registrar and proxy with digest auth on 127.0.0.1.
//!
//! Runs `docker/kamailio/kamailio.cfg` in the foreground (`-DD -E`) with everything
//! site-specific passed as `-A` defines: the listen socket, the db_text directory with the
//! `subscribers` table (user → plain password, loaded into htable `subs`), the ctl socket for
//! `kamcmd`, the realm. Contacts live in memory only (usrloc `db_mode` 0), so [`Kamailio::restart`]
//! forgets every registration, like a PBX reboot. See the cfg header for the routing policy
//! (RFC 3261 §10 registrar, §16 proxy, 401/407 digest challenges).
//!
//! Readiness means both: `kamcmd core.uptime` answers on the ctl socket, and an OPTIONS sent
//! to the SIP port gets a 200. A start that fails because another process took the port in the
//! meantime is retried on a new port.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::ports;
use super::process::{log_tail, peer_command, PeerError, PeerProcess, LOG_TAIL_LINES};

const PEER: &str = "kamailio";
/// How long a start may take before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How many ports to try when the picked one is taken before Kamailio binds it.
const START_ATTEMPTS: usize = 5;
/// Realm of the digest challenges unless overridden.
pub const DEFAULT_REALM: &str = "dialback.test";

/// How to start Kamailio.
#[derive(Debug, Clone)]
pub struct KamailioOptions {
    /// `(user, password)`; the user is both the AOR user part and the digest username.
    pub subscribers: Vec<(String, String)>,
    /// Listen on TCP too, same port.
    pub tcp: bool,
    /// Challenge every initial non-REGISTER request (default: only those whose From user is a
    /// subscriber, so an unauthenticated caller can still reach registered users).
    pub auth_all: bool,
    /// Digest realm.
    pub realm: String,
    /// Digest algorithm of the challenges: `"MD5"` or `"SHA-256"` (RFC 7616).
    pub algorithm: String,
    /// Kamailio log level (`debug=`): 2 info, 3 debug.
    pub log_level: u8,
    /// Remove telephone-event from initial INVITE offers (`STRIP_TELEPHONE_EVENT`): a
    /// gateway that carries DTMF in-band only, for peers that always offer it (baresip 1.0).
    pub strip_telephone_event: bool,
}

impl KamailioOptions {
    pub fn new(subscribers: &[(&str, &str)]) -> Self {
        Self {
            subscribers: subscribers
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            tcp: false,
            auth_all: false,
            realm: DEFAULT_REALM.to_owned(),
            algorithm: "MD5".to_owned(),
            log_level: 2,
            strip_telephone_event: false,
        }
    }
}

/// One contact bound to an AOR, as `kamcmd ul.lookup` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Binding {
    /// The Contact URI, e.g. `sip:gate-user@127.0.0.1:40312`.
    pub address: String,
    /// Seconds left; `None` for a permanent binding.
    pub expires_s: Option<u64>,
    pub call_id: String,
    pub cseq: Option<u32>,
    pub user_agent: String,
}

/// A running Kamailio; killed (with its workers) on drop.
pub struct Kamailio {
    dir: tempfile::TempDir,
    port: u16,
    options: KamailioOptions,
    process: Option<PeerProcess>,
}

impl Kamailio {
    /// Starts Kamailio on a free UDP port of 127.0.0.1 with these subscribers.
    pub fn start(subscribers: &[(&str, &str)]) -> Result<Self, PeerError> {
        Self::start_with(KamailioOptions::new(subscribers))
    }

    pub fn start_with(options: KamailioOptions) -> Result<Self, PeerError> {
        let dir = tempfile::Builder::new()
            .prefix("kamailio-")
            .tempdir()
            .map_err(|source| io_error("create temp dir", source))?;
        write_subscribers(&dir.path().join("db"), &options.subscribers)?;
        let mut kamailio = Self {
            dir,
            port: 0,
            options,
            process: None,
        };
        let mut last_tail = String::new();
        for _ in 0..START_ATTEMPTS {
            kamailio.port = pick_port(kamailio.options.tcp)?;
            match kamailio.launch() {
                Ok(()) => return Ok(kamailio),
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

    /// The SIP socket, e.g. `127.0.0.1:40123`.
    pub fn sip_addr(&self) -> SocketAddr {
        ports::loopback(self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `sip:127.0.0.1:PORT`, usable as a registrar or outbound proxy URI.
    pub fn sip_uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    /// The digest realm of the challenges.
    pub fn realm(&self) -> &str {
        &self.options.realm
    }

    /// Temp directory holding the log, the ctl socket and the subscriber table.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("kamailio.log")
    }

    /// The last `lines` lines of Kamailio's log (stderr), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Pid of the main process, if running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(PeerProcess::pid)
    }

    /// The contact URIs currently bound to `user` (empty when none).
    ///
    /// # Panics
    /// When `kamcmd` cannot talk to Kamailio (it died): a silent empty list would make a
    /// "not registered" assertion pass for the wrong reason.
    pub fn registered_contacts(&self, user: &str) -> Vec<String> {
        self.bindings(user).into_iter().map(|b| b.address).collect()
    }

    /// The live bindings of `user` with their details. Panics like [`Self::registered_contacts`].
    pub fn bindings(&self, user: &str) -> Vec<Binding> {
        match self.try_bindings(user) {
            Ok(bindings) => bindings,
            Err(e) => panic!("{e}"),
        }
    }

    /// The live bindings of `user`; expired or deleted ones are left out.
    pub fn try_bindings(&self, user: &str) -> Result<Vec<Binding>, PeerError> {
        let out = self.kamcmd(&["ul.lookup", "location", &as_string(user)])?;
        Ok(parse_bindings(&out))
    }

    /// Polls until `user` has at least one contact, or `timeout` passes.
    pub fn wait_registered(&self, user: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, || !self.registered_contacts(user).is_empty())
    }

    /// Polls until `user` has no contact left, or `timeout` passes.
    pub fn wait_unregistered(&self, user: &str, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.registered_contacts(user).is_empty())
    }

    /// Removes every binding of `user` (`ul.rm`), as if it had unregistered.
    pub fn unregister(&self, user: &str) -> Result<(), PeerError> {
        self.kamcmd(&["ul.rm", "location", &as_string(user)])
            .map(drop)
    }

    /// Adds a subscriber or changes its password at run time (htable `subs`); also written to
    /// the subscriber table so that it survives [`Self::restart`].
    pub fn set_password(&mut self, user: &str, password: &str) -> Result<(), PeerError> {
        self.kamcmd(&[
            "htable.sets",
            "subs",
            &as_string(user),
            &as_string(password),
        ])?;
        self.options.subscribers.retain(|(u, _)| u != user);
        self.options
            .subscribers
            .push((user.to_owned(), password.to_owned()));
        write_subscribers(&self.dir.path().join("db"), &self.options.subscribers)
    }

    /// Runs `kamcmd -s unix:CTL ARGS...` and returns its stdout; `error: ...` output for
    /// anything but a missing or empty AOR counts as failure.
    pub fn kamcmd(&self, args: &[&str]) -> Result<String, PeerError> {
        let ctl = format!("unix:{}", self.ctl_path().display());
        let output = Command::new("kamcmd")
            .arg("-s")
            .arg(&ctl)
            .args(args)
            .output()
            .map_err(|source| PeerError::Spawn {
                peer: PEER,
                program: "kamcmd".to_owned(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let failed = !output.status.success()
            || (stdout.starts_with("error:") && !is_empty_aor(&stdout))
            || stderr.contains("error");
        if failed {
            return Err(PeerError::Control {
                peer: PEER,
                command: format!("kamcmd -s {ctl} {}", args.join(" ")),
                output: format!(
                    "{stdout}{stderr}\nkamailio log:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                ),
            });
        }
        Ok(stdout)
    }

    /// Kills Kamailio and all its workers; the port is free when this returns.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate();
        }
        // Workers may hold the socket for a moment after the leader is reaped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ports::udp_port_in_use(self.port) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the main process is alive.
    pub fn is_running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| p.try_exit().is_none())
    }

    /// Kills and starts again on the same port with the same subscribers; all registrations
    /// are lost (db_mode 0).
    pub fn restart(&mut self) -> Result<(), PeerError> {
        self.kill();
        let _ = fs::remove_file(self.ctl_path());
        self.launch()
    }

    fn launch(&mut self) -> Result<(), PeerError> {
        let dir = self.dir.path();
        let log = self.log_path();
        // Appended, so a restart keeps the previous run's log above its own.
        if let Ok(mut f) = fs::File::options().create(true).append(true).open(&log) {
            let _ = writeln!(f, "--- kamailio start on port {} ---", self.port);
        }
        let mut cmd = peer_command("kamailio");
        cmd.arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(config_path())
            .arg("-w")
            .arg(dir)
            .arg("-Y")
            .arg(dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .args(["-m", "64", "-M", "8"])
            .arg("-A")
            .arg(format!("LISTEN=udp:127.0.0.1:{}", self.port))
            .arg("-A")
            .arg(format!("SUBS_DB=\"text://{}\"", dir.join("db").display()))
            .arg("-A")
            .arg(format!("CTL_SOCK=\"unix:{}\"", self.ctl_path().display()))
            .arg("-A")
            .arg(format!("REALM=\"{}\"", self.options.realm))
            .arg("-A")
            .arg(format!("AUTH_ALGORITHM=\"{}\"", self.options.algorithm))
            .arg("-A")
            .arg(format!("DBG={}", self.options.log_level))
            .current_dir(dir);
        if self.options.tcp {
            cmd.arg("-A")
                .arg("WITH_TCP")
                .arg("-A")
                .arg(format!("LISTEN_TCP=tcp:127.0.0.1:{}", self.port));
        }
        if self.options.auth_all {
            cmd.arg("-A").arg("AUTH_ALL");
        }
        if self.options.strip_telephone_event {
            cmd.arg("-A").arg("STRIP_TELEPHONE_EVENT");
        }
        let mut process = PeerProcess::spawn(PEER, cmd, &log)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit() {
                return Err(process.exited_error(status));
            }
            if self.kamcmd(&["core.uptime"]).is_ok() && options_answered(self.sip_addr()) {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PeerError::NotReady {
                    peer: PEER,
                    waited: READY_TIMEOUT,
                    log: log.clone(),
                    log_tail: process.log_tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn ctl_path(&self) -> PathBuf {
        self.dir.path().join("ctl.sock")
    }

    fn wait_until(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate();
        }
    }
}

/// `docker/kamailio/kamailio.cfg` in this checkout.
pub fn config_path() -> PathBuf {
    super::repo_root().join("docker/kamailio/kamailio.cfg")
}

/// Parses `kamcmd ul.lookup` output into the live bindings.
pub fn parse_bindings(out: &str) -> Vec<Binding> {
    let mut bindings = Vec::new();
    let mut current: Option<Binding> = None;
    let mut live = true;
    for line in out.lines().map(str::trim) {
        if line.starts_with("Contact:") && line.ends_with('{') {
            if let Some(b) = current.take().filter(|_| live) {
                bindings.push(b);
            }
            current = Some(Binding::default());
            live = true;
            continue;
        }
        let (Some(binding), Some((key, value))) = (current.as_mut(), line.split_once(':')) else {
            continue;
        };
        let value = value.trim();
        match key {
            "Address" => binding.address = value.to_owned(),
            "Expires" => match value {
                "permanent" => binding.expires_s = None,
                v => match v.parse() {
                    Ok(s) => binding.expires_s = Some(s),
                    // "expired" or "deleted": the timer has not swept it yet.
                    Err(_) => live = false,
                },
            },
            "Call-ID" => binding.call_id = value.to_owned(),
            "CSeq" => binding.cseq = value.parse().ok(),
            "User-Agent" => binding.user_agent = value.to_owned(),
            _ => {}
        }
    }
    if let Some(b) = current.filter(|_| live) {
        bindings.push(b);
    }
    bindings
}

/// Sends `OPTIONS sip:127.0.0.1:PORT` and waits briefly for a 200 (RFC 3261 §11).
pub fn options_answered(target: SocketAddr) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let Ok(local) = socket.local_addr() else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(300)));
    let branch = format!("z9hG4bK-probe-{}", local.port());
    let mut msg = String::new();
    let _ = write!(
        msg,
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=probe{port}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: probe-{port}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port()
    );
    if socket.send_to(msg.as_bytes(), target).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(socket.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200"))
}

fn pick_port(tcp: bool) -> Result<u16, PeerError> {
    let picked = if tcp {
        ports::free_udp_tcp_port()
    } else {
        ports::free_udp_port()
    };
    picked.map_err(|source| io_error("pick a free port", source))
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("bind") || log.contains("Address already in use")
}

/// Writes the htable source table `subscribers` in db_text format (kamailio db_text README:
/// `:` separates columns, `\` escapes `:` and `\` inside values).
fn write_subscribers(db_dir: &Path, subscribers: &[(String, String)]) -> Result<(), PeerError> {
    fs::create_dir_all(db_dir).map_err(|source| io_error("create db dir", source))?;
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let mut table =
        String::from("key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n");
    for (user, password) in subscribers {
        let _ = writeln!(table, "{}:0:0:{}:0", escape(user), escape(password));
    }
    fs::write(db_dir.join("subscribers"), table)
        .map_err(|source| io_error("write subscribers table", source))
}

/// `ul.lookup` answers an unknown or emptied AOR with a 500 error; for us it means "none".
fn is_empty_aor(out: &str) -> bool {
    out.contains("AOR not found") || out.contains("AOR has no contacts")
}

/// kamcmd guesses argument types (`1001` would go out as an integer); `s:` forces a string.
fn as_string(arg: &str) -> String {
    format!("s:{arg}")
}

fn io_error(what: &str, source: std::io::Error) -> PeerError {
    PeerError::Io {
        peer: PEER,
        what: what.to_owned(),
        source,
    }
}
