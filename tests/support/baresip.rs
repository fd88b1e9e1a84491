//! baresip (Debian package `baresip`, v1.0.0) as a headless softphone on loopback, driven
//! through its `ctrl_tcp` module: netstring-framed JSON commands (`{"command":"dial",
//! "params":"sip:...","token":"3"}`) answered by `{"response":true,"ok":..,"token":"3"}`, with
//! call events (`{"event":true,"type":"CALL_ESTABLISHED",..}`) on the same connection.
//!
//! What this knows about baresip 1.0.0, found by running it here:
//!
//! - `sip_listen 127.0.0.1:P` binds UDP and TCP on `P` and TLS on `P + 1`, so both ports must
//!   be free (a start that loses the race is retried on new ports).
//! - `net_interface 127.0.0.1` keeps SIP and the SDP's `c=` on loopback (`lo` as a name fails).
//! - The `aufile` source only takes 8 kHz WAV files for G.711; a phone with no source fails
//!   its calls, so every instance plays a WAV: [`BaresipOptions::audio_source`] or silence.
//!   There is no audio player: received audio is dropped.
//! - `/sndcode DIGITS` queues every key at once; libre's telev sender turns each into an RFC
//!   4733 event of at least 9 packets (180 ms at 20 ms ptime) and three end packets, keys back
//!   to back with new timestamps. Keys go out only when the answer took telephone-event.
//! - baresip always offers telephone-event (no setting removes it); for a call without it the
//!   PBX strips it (`KamailioOptions::strip_telephone_event`).
//! - `answermode=auto` in the account answers every incoming call at once.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ports;
use super::process::{peer_command, PeerError, PeerProcess, LOG_TAIL_LINES};

const PEER: &str = "baresip";
/// How long baresip may take to open its control port.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
const START_ATTEMPTS: usize = 5;
/// Where Debian installs the modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// How to start one softphone.
#[derive(Debug, Clone)]
pub struct BaresipOptions {
    /// User part of the AOR and digest username at the PBX.
    pub user: String,
    pub password: String,
    /// The PBX (registrar and, through the AOR's domain, outbound destination).
    pub pbx: SocketAddr,
    /// Register at the PBX (`regint`); off: calls only.
    pub register: bool,
    /// Answer incoming calls at once (`answermode=auto`).
    pub auto_answer: bool,
    /// An 8 kHz mono 16-bit WAV sent as the call's audio; `None`: 30 s of silence.
    pub audio_source: Option<PathBuf>,
    /// Offer only these codecs (`audio_codecs` account parameter, e.g. `"PCMA"`); `None`:
    /// PCMU and PCMA.
    pub codecs: Option<String>,
}

impl BaresipOptions {
    pub fn new(user: &str, password: &str, pbx: SocketAddr) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
            pbx,
            register: true,
            auto_answer: false,
            audio_source: None,
            codecs: None,
        }
    }

    pub fn auto_answer(mut self) -> Self {
        self.auto_answer = true;
        self
    }

    pub fn codecs(mut self, codecs: &str) -> Self {
        self.codecs = Some(codecs.to_owned());
        self
    }

    pub fn audio_source(mut self, wav: &Path) -> Self {
        self.audio_source = Some(wav.to_path_buf());
        self
    }
}

/// A running baresip with an open control connection; killed on drop.
pub struct Baresip {
    dir: tempfile::TempDir,
    sip_port: u16,
    control: Control,
    process: PeerProcess,
}

impl Baresip {
    /// Starts baresip on free loopback ports and connects to its control port. Registration
    /// is not awaited here: ask the PBX (`Kamailio::wait_registered`).
    pub fn start(options: BaresipOptions) -> Result<Self, PeerError> {
        let dir = tempfile::Builder::new()
            .prefix("baresip-")
            .tempdir()
            .map_err(|e| io_error("create temp dir", e))?;
        let source = match &options.audio_source {
            Some(wav) => wav.clone(),
            None => {
                let path = dir.path().join("silence.wav");
                write_silence(&path, Duration::from_secs(30))?;
                path
            }
        };
        let mut last_tail = String::new();
        for _ in 0..START_ATTEMPTS {
            let sip_port = pick_sip_port()?;
            let ctrl_port = ports::free_udp_tcp_port().map_err(|e| io_error("pick port", e))?;
            write_config(dir.path(), &options, sip_port, ctrl_port, &source)?;
            let log = dir.path().join("baresip.log");
            let mut cmd = peer_command("baresip");
            // -v: received DTMF and call states in the log; -s: every SIP message; -f: our config.
            cmd.args(["-v", "-s", "-f"])
                .arg(dir.path())
                .current_dir(dir.path());
            let mut process = PeerProcess::spawn(PEER, cmd, &log)?;
            match Control::connect(&mut process, ctrl_port) {
                Ok(control) => {
                    return Ok(Self {
                        dir,
                        sip_port,
                        control,
                        process,
                    })
                }
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

    /// baresip's SIP port on 127.0.0.1.
    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a control command (a menu command without the `/`) and returns its response;
    /// an `"ok":false` answer is an error.
    pub fn command(&mut self, command: &str, params: &str) -> Result<Value, PeerError> {
        self.control.command(command, params)
    }

    /// Calls `uri` (`sip:gate-admin@127.0.0.1:PBXPORT`).
    pub fn dial(&mut self, uri: &str) -> Result<(), PeerError> {
        self.command("dial", uri).map(drop)
    }

    /// Sends `digits` on the current call as RFC 4733 events (`/sndcode`).
    pub fn send_digits(&mut self, digits: &str) -> Result<(), PeerError> {
        self.command("sndcode", digits).map(drop)
    }

    /// Hangs up the current call.
    pub fn hangup(&mut self) -> Result<(), PeerError> {
        self.command("hangup", "").map(drop)
    }

    /// Waits up to `timeout` for an event of this type (`CALL_ESTABLISHED`, `CALL_CLOSED`,
    /// `CALL_INCOMING`, ...); events seen earlier count.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.control.events.iter().find(|e| e["type"] == kind) {
                return Some(e.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.process.try_exit().is_some() {
                return None;
            }
            let _ = self.control.pump(left.min(Duration::from_millis(200)));
        }
    }

    /// Every event received so far.
    pub fn events(&mut self) -> &[Value] {
        let _ = self.control.pump(Duration::from_millis(10));
        &self.control.events
    }

    /// The types of the events received so far, in order.
    pub fn event_types(&mut self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    }

    /// baresip's output (with `-v`), for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    /// The end of the output.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(LOG_TAIL_LINES)
    }

    /// The SIP messages baresip sent and received (its `-s` trace), in order, each without
    /// the `UDP a -> b` line.
    pub fn sip_messages(&self) -> Vec<String> {
        self.log()
            .split("\x1b[36;1m#\n")
            .skip(1)
            .filter_map(|entry| {
                let (_, rest) = entry.split_once('\n')?;
                Some(rest.split("\x1b[;m").next().unwrap_or(rest).to_owned())
            })
            .collect()
    }

    /// The SDP body of the first 200 answer to baresip's INVITE (the far end's answer).
    pub fn sdp_answer(&self) -> Option<String> {
        self.sip_messages().into_iter().find_map(|m| {
            let invite_ok = m.starts_with("SIP/2.0 200") && m.contains(" INVITE\r\n");
            let (_, body) = m.split_once("\r\n\r\n")?;
            (invite_ok && body.contains("m=audio")).then(|| body.to_owned())
        })
    }

    /// Keys baresip received as RFC 4733 events (its `received event: 'K' (end=1)` lines).
    pub fn received_digits(&self) -> String {
        self.log()
            .split("received event: '")
            .skip(1)
            .filter_map(|rest| {
                let mut chars = rest.chars();
                let key = chars.next()?;
                chars.as_str().starts_with("' (end=1)").then_some(key)
            })
            .collect()
    }
}

/// The control connection and what arrived on it.
struct Control {
    stream: TcpStream,
    buf: Vec<u8>,
    events: Vec<Value>,
    responses: Vec<Value>,
    next_token: u32,
}

impl Control {
    /// Connects once baresip listens; an early exit is reported with its log.
    fn connect(process: &mut PeerProcess, port: u16) -> Result<Self, PeerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.try_exit() {
                return Err(process.exited_error(status));
            }
            if let Ok(stream) = TcpStream::connect(ports::loopback(port)) {
                stream
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(|e| io_error("set read timeout", e))?;
                return Ok(Self {
                    stream,
                    buf: Vec::new(),
                    events: Vec::new(),
                    responses: Vec::new(),
                    next_token: 1,
                });
            }
            if Instant::now() >= deadline {
                return Err(PeerError::NotReady {
                    peer: PEER,
                    waited: READY_TIMEOUT,
                    log: process.log_path().to_path_buf(),
                    log_tail: process.log_tail(LOG_TAIL_LINES),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn command(&mut self, command: &str, params: &str) -> Result<Value, PeerError> {
        let token = self.next_token.to_string();
        self.next_token += 1;
        let body = json!({ "command": command, "params": params, "token": token }).to_string();
        let frame = format!("{}:{body},", body.len());
        self.stream
            .write_all(frame.as_bytes())
            .map_err(|e| io_error("send command", e))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if let Some(i) = self.responses.iter().position(|r| r["token"] == token) {
                let response = self.responses.remove(i);
                if response["ok"] == true {
                    return Ok(response);
                }
                return Err(PeerError::Control {
                    peer: PEER,
                    command: format!("{command} {params}"),
                    output: response.to_string(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PeerError::Control {
                    peer: PEER,
                    command: format!("{command} {params}"),
                    output: "no response".to_owned(),
                });
            }
            self.pump(left)?;
        }
    }

    /// Reads what arrives within `wait` (at least one read) and files complete frames.
    fn pump(&mut self, wait: Duration) -> Result<(), PeerError> {
        let deadline = Instant::now() + wait;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io_error(
                        "control connection closed",
                        ErrorKind::UnexpectedEof.into(),
                    ))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.split_frames();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(io_error("read control connection", e)),
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// Netstrings: `LEN:JSON,`.
    fn split_frames(&mut self) {
        loop {
            let Some(colon) = self.buf.iter().position(|&b| b == b':') else {
                return;
            };
            let Some(len) = std::str::from_utf8(&self.buf[..colon])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                // Not a netstring: drop everything, the next command resynchronises.
                self.buf.clear();
                return;
            };
            let end = colon + 1 + len;
            if self.buf.len() <= end {
                return;
            }
            let value: Value =
                serde_json::from_slice(&self.buf[colon + 1..end]).unwrap_or_default();
            self.buf.drain(..=end);
            if value["event"] == true {
                self.events.push(value);
            } else if value["response"] == true {
                self.responses.push(value);
            }
        }
    }
}

/// A SIP port `P` of 127.0.0.1 with UDP and TCP `P` and TCP `P + 1` (TLS) free.
fn pick_sip_port() -> Result<u16, PeerError> {
    for _ in 0..64 {
        let port = ports::free_udp_tcp_port().map_err(|e| io_error("pick port", e))?;
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(io_error(
        "pick a SIP port with a free TLS neighbour",
        ErrorKind::AddrInUse.into(),
    ))
}

fn write_config(
    dir: &Path,
    o: &BaresipOptions,
    sip_port: u16,
    ctrl_port: u16,
    source: &Path,
) -> Result<(), PeerError> {
    let config = format!(
        "sip_listen 127.0.0.1:{sip_port}\n\
         net_interface 127.0.0.1\n\
         module_path {MODULE_PATH}\n\
         module g711.so\n\
         module aufile.so\n\
         module account.so\n\
         module menu.so\n\
         module ctrl_tcp.so\n\
         ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
         audio_source aufile,{source}\n",
        source = source.display()
    );
    let mut account = format!(
        "<sip:{user}@{pbx};transport=udp>;auth_pass={pw};regint={regint}",
        user = o.user,
        pbx = o.pbx,
        pw = o.password,
        regint = if o.register { 60 } else { 0 },
    );
    if o.auto_answer {
        account.push_str(";answermode=auto");
    }
    if let Some(codecs) = &o.codecs {
        account.push_str(";audio_codecs=");
        account.push_str(codecs);
    }
    account.push('\n');
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text).map_err(|e| io_error(&format!("write {name}"), e))
    };
    write("config", &config)?;
    write("accounts", &account)?;
    write("contacts", "")
}

/// `len` of silence as an 8 kHz mono 16-bit WAV.
pub fn write_silence(path: &Path, len: Duration) -> Result<(), PeerError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |e: hound::Error| io_error("write silence WAV", std::io::Error::other(e));
    let mut w = hound::WavWriter::create(path, spec).map_err(fail)?;
    for _ in 0..(len.as_millis() * 8) {
        w.write_sample(0i16).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("Address already in use")
}

fn io_error(what: &str, source: std::io::Error) -> PeerError {
    PeerError::Io {
        peer: PEER,
        what: what.to_owned(),
        source,
    }
}
