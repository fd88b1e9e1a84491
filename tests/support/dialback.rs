//! Start a real `dialback run` process for integration tests: a dialplan written to a temp
//! dir, free loopback ports, stderr captured to a log file, SIGTERM or kill on drop.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A free port on 127.0.0.1 for both UDP and TCP.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// A range of 40 ports for a gate's `media.rtp_ports`, starting at an even port that was free,
/// away from the default range, so that a capture filter (`portrange LOW-HIGH`) can name the
/// gate's RTP and parallel tests rarely share it (the gate skips ports in use).
pub fn private_rtp_range() -> (u16, u16) {
    loop {
        let low = free_port() & !1;
        if (1024..=65_000).contains(&low) && !(20_000..=21_000).contains(&low) {
            return (low, low + 39);
        }
    }
}

/// Whether `text` holds `secret` as a token of its own, not inside a longer run of letters
/// and digits: a 4-digit PIN also turns up by chance inside microsecond stamps, ports and
/// hex Call-IDs of a debug log, which are no leak.
pub fn mentions(text: &str, secret: &str) -> bool {
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// A minimal OPTIONS request.
pub fn options_request(uri: &str, call_id: &str) -> String {
    format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A running dialback.
pub struct Gate {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub dialplan: Value,
}

impl Gate {
    /// Trunks that do not register (no PBX), on free ports.
    pub fn start_standalone() -> std::io::Result<Gate> {
        let proxy_port = free_port();
        let dialplan = json!({
            "trunks": {
                "user": { "listen": format!("127.0.0.1:{}", free_port()), "register": false,
                          "aor": "sip:gate-user@127.0.0.1" },
                "admin": { "listen": format!("127.0.0.1:{}", free_port()), "register": false,
                           "aor": "sip:gate-admin@127.0.0.1" },
                "originate": { "listen": format!("127.0.0.1:{}", free_port()),
                               "proxy": format!("sip:127.0.0.1:{proxy_port}"),
                               "from": "sip:gate-out@127.0.0.1", "auth_username": "gate-out",
                               "password_env": "DIALBACK_TEST_ORIGINATE_PASSWORD" }
            }
        });
        Gate::start(dialplan, &[("DIALBACK_TEST_ORIGINATE_PASSWORD", "unused")])
    }

    /// Start with a given dialplan and environment.
    pub fn start(dialplan: Value, env: &[(&str, &str)]) -> std::io::Result<Gate> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("dialplan.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&dialplan)?)?;
        let mut g = Gate {
            child: None,
            dir,
            config_path,
            dialplan,
        };
        g.spawn(env)?;
        Ok(g)
    }

    fn spawn(&mut self, env: &[(&str, &str)]) -> std::io::Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dialback"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "dialback=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn()?);
        self.wait_ready(Duration::from_secs(10))
    }

    fn wait_ready(&mut self, within: Duration) -> std::io::Result<()> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let deadline = Instant::now() + within;
        let mut i = 0;
        while Instant::now() < deadline {
            if !self.is_running() {
                return Err(std::io::Error::other(format!(
                    "dialback exited early:\n{}",
                    self.log()
                )));
            }
            i += 1;
            let req = options_request("sip:ready@127.0.0.1", &format!("ready-{i}"));
            sock.send_to(req.as_bytes(), self.user_addr())?;
            let mut buf = [0u8; 4096];
            if sock.recv_from(&mut buf).is_ok() {
                return Ok(());
            }
        }
        Err(std::io::Error::other(format!(
            "dialback not ready:\n{}",
            self.log()
        )))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dialback.log")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn addr(&self, trunk: &str) -> SocketAddr {
        self.dialplan["trunks"][trunk]["listen"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("listen address in dialplan")
    }

    pub fn user_addr(&self) -> SocketAddr {
        self.addr("user")
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.addr("admin")
    }
    pub fn originate_addr(&self) -> SocketAddr {
        self.addr("originate")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Start a new process on the same dialplan and directory (state and audit carry over).
    pub fn restart_in(mut old: Gate, env: &[(&str, &str)]) -> std::io::Result<Gate> {
        old.kill();
        let mut g = Gate {
            child: None,
            dir: std::mem::replace(&mut old.dir, tempfile::tempdir()?),
            config_path: old.config_path.clone(),
            dialplan: old.dialplan.clone(),
        };
        drop(old);
        g.spawn(env)?;
        Ok(g)
    }

    /// SIGTERM and wait (bounded); returns the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The audit trail's records, in order.
    pub fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Polls the audit trail (every 100 ms) until `event` (`event` or `event:reason`, as in
    /// [`Self::audit_events`]) is in it, or `within` passes.
    pub fn wait_audit(&self, event: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            if self.audit_events().iter().any(|e| e == event) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The audit trail as `event` or `event:reason` strings, in order.
    pub fn audit_events(&self) -> Vec<String> {
        self.audit_records()
            .into_iter()
            .map(|v| {
                let event = v["event"].as_str().unwrap_or("");
                match v["reason"].as_str() {
                    Some(r) => format!("{event}:{r}"),
                    None => event.to_string(),
                }
            })
            .collect()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- dialback log ---\n{}", self.log());
        }
    }
}
