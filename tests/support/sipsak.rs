//! sipsak (Debian package `sipsak`) as an administrator's SIP client: one MESSAGE through the
//! PBX to a gate trunk, answering the gate's 401 with the administrator's digest password.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Sends `MESSAGE sip:{gate_user}@{pbx}` with `body` from a non-subscriber (so the PBX does
/// not challenge it) and answers the gate's challenge as `user` / `password`. Returns sipsak's
/// exit code: 0 when the final answer was 2xx.
pub fn message(
    pbx: SocketAddr,
    gate_user: &str,
    user: &str,
    password: &str,
    body: &str,
) -> Option<i32> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let tag = format!("{}-{gate_user}", std::process::id());
    write!(
        file,
        "MESSAGE sip:{gate_user}@{pbx} SIP/2.0\r\n\
         From: <sip:roaming-admin@127.0.0.1>;tag=m{tag}\r\n\
         To: <sip:{gate_user}@{pbx}>\r\n\
         Call-ID: maintain-{tag}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Max-Forwards: 70\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write MESSAGE");
    Command::new("sipsak")
        .arg("-f")
        .arg(file.path())
        .arg("-s")
        .arg(format!("sip:{gate_user}@{pbx}"))
        .args(["-u", user, "-a", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipsak runs")
        .code()
}
