//! The audit log at the edge: appends [`AuditRecord`] lines to the dialplan's `audit.path`
//! and makes them durable before the caller acts on the decision they record.
//!
//! DESIGN.md step 4: "Every decision is audited to disk (fsync) before it is acted on"; issue
//! 4: the record is written and fsynced before the action it records (before dialling), and if
//! the write or fsync fails the gate refuses maintenance starts (fail closed) and says so at
//! error. [`AuditLog::healthy`] feeds `StartRequest::audit_available`, which makes
//! `gate::decide` answer `DenyReason::AuditUnavailable`.
//!
//! Owns the file handle and the blocking IO; the record format is `gate::audit`'s. Each line
//! goes out in one `write(2)` loop under a mutex on an `O_APPEND` descriptor, so lines from
//! concurrent callers never interleave (POSIX.1-2017 `write()`: with `O_APPEND` the offset is
//! set to end of file before each write). Durability is `fdatasync(2)` (`File::sync_data`),
//! per record, when `audit.fsync` is on. The IO runs on tokio's blocking pool, never on a
//! runtime worker.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{error, info, warn};

use crate::gate::audit::AuditRecord;

/// Why the audit log could not be opened or could not take a record.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: directory {dir} does not exist")]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    #[error("cannot open audit log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot sync directory {dir} after creating audit log: {source}")]
    SyncDirectory { dir: PathBuf, source: io::Error },
    #[error("cannot write audit log {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot fsync audit log {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
    /// The blocking write task did not finish (it panicked, or the runtime is shutting down);
    /// whether the line reached the file is unknown, so it counts as a failure.
    #[error("audit writer for {path} did not finish")]
    WriterLost { path: PathBuf },
}

/// An open, append-only audit log. Cheap to clone; clones share the file, the writer lock and
/// the health flag.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    fsync: bool,
    /// One writer at a time: the mutex serialises `write` + `fdatasync` pairs, so a record's
    /// fsync never covers a half-written line of another caller.
    file: Mutex<Writer>,
    healthy: AtomicBool,
}

#[derive(Debug)]
struct Writer {
    file: File,
    /// A failed write may have left a fragment without its `\n`; the next line then starts
    /// with `\n`, so the fragment stands alone and the new record stays parseable.
    torn: bool,
}

impl AuditLog {
    /// Opens `path` for appending, creating it with mode 0600 (unix) if missing. The parent
    /// directory must exist. A newly created file's directory entry is fsynced too when
    /// `fsync` is on, so the log itself survives a crash.
    ///
    /// Blocking (a few syscalls); call it at start-up, before the runtime serves requests.
    pub fn open(path: &Path, fsync: bool) -> Result<AuditLog, AuditError> {
        let dir = parent_dir(path);
        if !dir.is_dir() {
            return Err(AuditError::MissingDirectory {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            });
        }
        let open_err = |source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        };
        let (file, created) = match append_options(true).open(path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (append_options(false).open(path).map_err(open_err)?, false)
            }
            Err(e) => return Err(open_err(e)),
        };
        if created && fsync {
            sync_dir(dir).map_err(|source| AuditError::SyncDirectory {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        warn_if_shared(path, &file);
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                fsync,
                file: Mutex::new(Writer { file, torn: false }),
                healthy: AtomicBool::new(true),
            }),
        })
    }

    /// Appends `rec` as one JSON line and, when fsync is on, waits for `fdatasync`. Returns
    /// only once the line is in the file (and durable, with fsync): act on the decision after
    /// this returns `Ok`, never before. On error the log turns unhealthy and an error event
    /// is logged.
    pub async fn record(&self, rec: &AuditRecord) -> Result<(), AuditError> {
        let line = rec.to_json_line();
        let inner = Arc::clone(&self.inner);
        // The health flag is updated inside the blocking task, under the writer lock, so it
        // always reflects the latest write even if this future is dropped mid-way.
        match tokio::task::spawn_blocking(move || inner.append(line.as_bytes())).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let e = AuditError::WriterLost {
                    path: self.inner.path.clone(),
                };
                self.inner.note(&Err(&e));
                Err(e)
            }
        }
    }

    /// False after a failed write or fsync, until a later record succeeds. Feed it to
    /// `StartRequest::audit_available`: no audit, no callback.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Inner {
    /// Blocking: one line, one write loop, then `fdatasync` if configured; the health flag
    /// is set before the lock is released, so concurrent writers cannot leave it stale.
    fn append(&self, line: &[u8]) -> Result<(), AuditError> {
        // A poisoned lock only means an earlier writer panicked mid-call; the descriptor is
        // still valid and `torn` says whether a fragment may be pending.
        let mut w = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = self.write_line(&mut w, line);
        self.note(&outcome.as_ref().map(|_| ()));
        outcome
    }

    fn write_line(&self, w: &mut Writer, line: &[u8]) -> Result<(), AuditError> {
        let write_err = |source| AuditError::Write {
            path: self.path.clone(),
            source,
        };
        if w.torn {
            w.file.write_all(b"\n").map_err(write_err)?;
            w.torn = false;
        }
        if let Err(e) = w.file.write_all(line) {
            w.torn = true;
            return Err(write_err(e));
        }
        if self.fsync {
            // Linux fsync semantics: after a failed fsync the dirty pages may be dropped and
            // a retry can succeed without them, so a failure is final for this record; the
            // caller was told and did not act on it.
            w.file.sync_data().map_err(|source| AuditError::Sync {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Updates the health flag and says so in the log on each change (and at every failure).
    fn note(&self, outcome: &Result<(), &AuditError>) {
        match outcome {
            Ok(()) => {
                if !self.healthy.swap(true, Ordering::AcqRel) {
                    info!(target: "audit", path = %self.path.display(), "audit log writable again; maintenance starts allowed");
                }
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Release);
                error!(target: "audit", path = %self.path.display(), error = %e, "audit record not durable; maintenance starts refused");
            }
        }
    }
}

fn append_options(create_new: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.append(true);
    if create_new {
        o.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The log names administrators and their source addresses: owner only.
        o.mode(0o600);
    }
    o
}

/// The directory holding `path`; `.` for a bare file name.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync a directory so a new or renamed entry in it is durable (fsync(2): syncing a file
/// does not sync its directory entry).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An existing log readable by group or others is left alone (it may be a device or managed
/// by the operator) but reported.
fn warn_if_shared(path: &Path, file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata() {
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                warn!(target: "audit", path = %path.display(), mode = format_args!("{:o}", mode & 0o777), "audit log is accessible to group or others");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::gate::audit::{EventCode, Reason, Transport, Trunk};
    use crate::gate::policy::AdminId;
    use crate::gate::WallTime;

    /// A record whose source port names the writer and whose time is its sequence number.
    fn rec(writer: u16, seq: u64) -> AuditRecord {
        AuditRecord {
            event: EventCode::SignalFail,
            time: WallTime(seq),
            trunk: Trunk::Admin,
            transport: Transport::Udp,
            source: Some(SocketAddr::from(([192, 0, 2, 1], writer))),
            admin: Some(AdminId::parse("1001").unwrap()),
            reason: Some(Reason::DigitNotOwned),
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_never_interleave_and_keep_their_order() {
        const WRITERS: u16 = 8;
        const EACH: u64 = 200;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for seq in 0..EACH {
                        log.record(&rec(w, seq)).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(log.healthy());
        let all = lines(&path);
        assert_eq!(all.len(), usize::from(WRITERS) * EACH as usize);
        let mut next = vec![0u64; usize::from(WRITERS)];
        for v in &all {
            let source: SocketAddr = v["source"].as_str().unwrap().parse().unwrap();
            let w = usize::from(source.port());
            let want = crate::gate::audit::rfc3339(WallTime(next[w]));
            assert_eq!(v["ts"], want.as_str(), "writer {w} out of order");
            next[w] += 1;
        }
        assert!(next.iter().all(|n| *n == EACH));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn new_log_is_owner_only_and_appends_to_an_existing_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        AuditLog::open(&path, false)
            .unwrap()
            .record(&rec(1, 1))
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        AuditLog::open(&path, true)
            .unwrap()
            .record(&rec(1, 2))
            .await
            .unwrap();
        assert_eq!(lines(&path).len(), 2, "reopening appends, never truncates");
    }

    #[test]
    fn missing_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("audit.jsonl");
        let err = AuditLog::open(&path, true).unwrap_err();
        assert!(
            matches!(err, AuditError::MissingDirectory { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("no-such-dir"), "{msg}");
        assert!(msg.contains("audit.jsonl"), "{msg}");
    }

    /// A read-only location refuses the log at start-up, with its path. sysfs refuses new
    /// files even to root; a 0400 file does so for everyone else.
    #[cfg(unix)]
    #[test]
    fn read_only_location_fails_to_open_with_its_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let readonly_file = dir.path().join("audit.jsonl");
        std::fs::write(&readonly_file, b"").unwrap();
        std::fs::set_permissions(&readonly_file, std::fs::Permissions::from_mode(0o400)).unwrap();
        let mut paths = vec![PathBuf::from("/sys/kernel/audit.jsonl")];
        // Root ignores file modes.
        if std::fs::OpenOptions::new()
            .append(true)
            .open(&readonly_file)
            .is_err()
        {
            paths.push(readonly_file);
        }
        let mut tried = 0;
        for path in paths.iter().filter(|p| parent_dir(p).is_dir()) {
            let err = AuditLog::open(path, true).unwrap_err();
            assert!(matches!(err, AuditError::Open { .. }), "{err:?}");
            assert!(err.to_string().contains(&*path.to_string_lossy()));
            tried += 1;
        }
        assert!(tried > 0, "no read-only location to try");
    }

    /// `/dev/full` answers every write with ENOSPC: a real disk-full failure, not a mock.
    #[tokio::test]
    async fn full_device_fails_closed_and_stays_unhealthy() {
        let path = Path::new("/dev/full");
        if !path.exists() {
            return;
        }
        let log = AuditLog::open(path, true).unwrap();
        assert!(log.healthy());
        let err = log.record(&rec(1, 1)).await.unwrap_err();
        match &err {
            AuditError::Write { path, source } => {
                assert_eq!(path, Path::new("/dev/full"));
                assert_eq!(source.raw_os_error(), Some(28), "ENOSPC");
            }
            other => panic!("{other:?}"),
        }
        assert!(!log.healthy());
        assert!(log.record(&rec(1, 2)).await.is_err());
        assert!(!log.healthy(), "sticky while writes keep failing");
    }

    #[tokio::test]
    async fn health_returns_after_a_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        // Simulate an earlier failure that left a fragment without its newline.
        {
            let mut w = log.inner.file.lock().unwrap();
            w.file.write_all(b"{\"ts\":\"19").unwrap();
            w.torn = true;
        }
        log.inner.healthy.store(false, Ordering::Release);
        log.record(&rec(1, 7)).await.unwrap();
        assert!(log.healthy());
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(v["ts"], crate::gate::audit::rfc3339(WallTime(7)).as_str());
    }

    const CHILD_ENV: &str = "DIALBACK_AUDIT_KILL_CHILD";
    const CHILD_TEST: &str = "runtime::audit::tests::kill_child_records_until_killed";

    /// Child half of the kill test: does nothing unless started by it.
    #[tokio::test]
    async fn kill_child_records_until_killed() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let log = AuditLog::open(Path::new(&path), true).unwrap();
        for n in 1..=100_000u64 {
            log.record(&rec(1, n)).await.unwrap();
            println!("recorded {n}");
        }
    }

    /// `record().await` returning means the line is in the file: after SIGKILL, every record
    /// the child reported is on disk, whole (and any tail is at most one fragment).
    #[cfg(unix)]
    #[test]
    fn records_acknowledged_before_sigkill_are_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut acked = 0u64;
        let mut line = String::new();
        while acked < 20 {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
            if let Some(n) = line.trim().strip_prefix("recorded ") {
                acked = n.parse().unwrap();
            }
        }
        child.kill().unwrap(); // SIGKILL on unix
        child.wait().unwrap();
        // Lines the child printed before it died are still in the pipe.
        for l in out.lines().map_while(Result::ok) {
            if let Some(n) = l.trim().strip_prefix("recorded ") {
                acked = acked.max(n.parse().unwrap());
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (whole, tail) = text.rsplit_once('\n').unwrap();
        assert!(!tail.contains('\n'));
        let on_disk = whole.lines().count() as u64;
        assert!(
            on_disk >= acked,
            "{on_disk} lines on disk < {acked} acknowledged"
        );
        for (i, l) in whole.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let want = crate::gate::audit::rfc3339(WallTime(i as u64 + 1));
            assert_eq!(v["ts"], want.as_str());
        }
    }
}
