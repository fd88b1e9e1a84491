//! SIP over TCP (RFC 3261 §18): accept with a connection cap, frame with `parse_stream`, hand
//! framed messages to the trunk task over one bounded channel, write its answers back.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tracing::debug;

use crate::sip::endpoint::AllowRule;
use crate::sip::message::{parse_stream, Limits, Message, StreamFrame};

/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// What a connection task tells the trunk task.
#[derive(Debug)]
pub enum Inbound {
    /// A new connection and the channel that writes to it; always sent before its messages.
    Opened {
        conn: u64,
        writer: mpsc::Sender<Vec<u8>>,
        /// Our own connection to the registrar (registration over TCP).
        outbound: bool,
    },
    Message {
        conn: u64,
        src: SocketAddr,
        msg: Box<Message>,
    },
    Malformed {
        conn: u64,
    },
    Closed {
        conn: u64,
    },
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub async fn accept_loop(
    listener: TcpListener,
    limits: Limits,
    max_connections: usize,
    allow: Option<Vec<AllowRule>>,
    inbound: mpsc::Sender<Inbound>,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let Ok((stream, src)) = listener.accept().await else {
            continue;
        };
        if let Some(rules) = &allow {
            let ok = rules.iter().any(|r| match r {
                AllowRule::Addr(a) => *a == src,
                AllowRule::Ip(ip) => *ip == src.ip(),
            });
            if !ok {
                debug!(%src, "tcp connection from a source not on the allowlist closed");
                continue;
            }
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%src, "tcp connection cap reached; closing");
            continue;
        };
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let (wtx, wrx) = mpsc::channel(64);
        let opened = Inbound::Opened {
            conn,
            writer: wtx,
            outbound: false,
        };
        if inbound.send(opened).await.is_err() {
            return;
        }
        let inbound = inbound.clone();
        tokio::spawn(async move {
            connection(stream, src, conn, limits, Some(IDLE), inbound.clone(), wrx).await;
            let _ = inbound.send(Inbound::Closed { conn }).await;
            drop(permit);
        });
    }
}

async fn connection(
    stream: TcpStream,
    src: SocketAddr,
    conn: u64,
    limits: Limits,
    idle: Option<Duration>,
    inbound: mpsc::Sender<Inbound>,
    mut writes: mpsc::Receiver<Vec<u8>>,
) {
    // Our own outbound connection stays open however quiet it is (refreshes keep it used).
    let idle = idle.unwrap_or(Duration::from_secs(24 * 3600));
    let (mut rd, mut wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    loop {
        tokio::select! {
            r = tokio::time::timeout(idle, rd.read(&mut chunk)) => {
                let n = match r {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                    Ok(Ok(n)) => n,
                };
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                loop {
                    match parse_stream(&buf, &limits) {
                        Ok(StreamFrame::Incomplete) => break,
                        Ok(StreamFrame::KeepAlive(k)) => { buf.drain(..k.min(buf.len())); }
                        Ok(StreamFrame::Complete(msg, used)) => {
                            buf.drain(..used.min(buf.len()));
                            if inbound.send(Inbound::Message { conn, src, msg }).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            debug!(%src, error = %e, "tcp framing error; closing");
                            let _ = inbound.send(Inbound::Malformed { conn }).await;
                            // Give the trunk a moment to answer anything already queued.
                            while let Ok(Some(bytes)) = tokio::time::timeout(Duration::from_millis(200), writes.recv()).await {
                                let _ = wr.write_all(&bytes).await;
                            }
                            return;
                        }
                    }
                }
            }
            w = writes.recv() => match w {
                Some(bytes) => if wr.write_all(&bytes).await.is_err() { return; },
                None => return,
            }
        }
    }
}

/// Keep one connection to `dest` open for the trunk's registration (RFC 3261 §18.1.1: requests
/// and their responses share the connection), reconnecting with a bounded backoff.
pub async fn connect_loop(dest: SocketAddr, limits: Limits, inbound: mpsc::Sender<Inbound>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(dest)).await {
            Ok(Ok(stream)) => {
                backoff = Duration::from_millis(500);
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                let (wtx, wrx) = mpsc::channel(64);
                let opened = Inbound::Opened {
                    conn,
                    writer: wtx,
                    outbound: true,
                };
                if inbound.send(opened).await.is_err() {
                    return;
                }
                connection(stream, dest, conn, limits, None, inbound.clone(), wrx).await;
                if inbound.send(Inbound::Closed { conn }).await.is_err() {
                    return;
                }
                debug!(%dest, "registrar connection closed; reconnecting");
            }
            Ok(Err(e)) => debug!(%dest, error = %e, "cannot connect to registrar"),
            Err(_) => debug!(%dest, "connect to registrar timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
