//! Persisted gate state: lockouts, failure counts and callback rate counters survive a restart
//! (DESIGN.md issue 4), in the dialplan's `security.state_path`.
//!
//! Owns the file format (the JSON of `gate::decide::GateState`) and its crash-safe
//! replacement: write `<path>.tmp` (mode 0600), fsync it, `rename(2)` it over `<path>`, fsync
//! the directory. POSIX `rename()` replaces the target atomically, so a crash leaves either the
//! old file or the new one, never a mix; the directory fsync makes the rename itself durable
//! (fsync(2): syncing a file does not sync the entry naming it). A leftover `.tmp` from a
//! crash is ignored by [`load_state`] and overwritten by the next [`save_state`].
//!
//! Fail closed: a missing file is a first start (empty state), but a file that exists and
//! cannot be read or parsed is an error naming the file, and the caller must refuse to start
//! rather than run with cleared lockouts (an attacker who could corrupt the file would
//! otherwise reset their own lockout). The operator fixes or removes the file.
//!
//! Saves of one path must not run concurrently (they share `<path>.tmp`); the runtime keeps
//! the gate state in one task and saves from there.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::gate::decide::GateState;

use super::audit::{parent_dir, sync_dir};

/// Largest state file [`load_state`] reads. `GateState` is bounded by the number of
/// administrators and by `MAX_SOURCES` source entries; a file far beyond that is not ours.
pub const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// Why the gate state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read gate state {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("gate state {path} is {len} bytes, more than the {max} allowed; refusing to start (fix or remove the file)")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error("gate state {path} is corrupt: {source}; refusing to start rather than clear lockouts (fix or remove the file)")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot encode gate state for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write gate state {tmp}: {source}")]
    WriteTemp { tmp: PathBuf, source: io::Error },
    #[error("cannot rename {tmp} over gate state {path}: {source}")]
    Rename {
        tmp: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot sync directory {dir} after saving gate state: {source}")]
    SyncDirectory { dir: PathBuf, source: io::Error },
    /// The blocking task did not finish (it panicked, or the runtime is shutting down).
    #[error("gate state task for {path} did not finish")]
    TaskLost { path: PathBuf },
}

/// Loads the gate state from `path`: the empty state if the file does not exist, an error if
/// it exists but cannot be read or parsed (see the module doc: the caller refuses to start).
/// Calls [`GateState::after_restart`], so no callback is active after loading. Blocking.
pub fn load_state(path: &Path) -> Result<GateState, StateError> {
    let read_err = |source| StateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GateState::new()),
        Err(e) => return Err(read_err(e)),
    };
    let len = file.metadata().map_err(read_err)?.len();
    if len > MAX_STATE_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
            len,
            max: MAX_STATE_BYTES,
        });
    }
    let mut bytes = Vec::new();
    // `take` bounds the read even if the file grows after the length check.
    file.take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            max: MAX_STATE_BYTES,
        });
    }
    let mut state: GateState =
        serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })?;
    state.after_restart();
    Ok(state)
}

/// Replaces the file at `path` with `state`, atomically and durably: `<path>.tmp` is written
/// with mode 0600 and fsynced, renamed over `path`, and the directory is fsynced. On error the
/// old file is intact (a `.tmp` may be left behind; it is harmless). Blocking.
pub fn save_state(path: &Path, state: &GateState) -> Result<(), StateError> {
    let bytes = encode(path, state)?;
    write_atomically(path, &bytes)
}

/// [`load_state`] on tokio's blocking pool.
pub async fn load_state_async(path: &Path) -> Result<GateState, StateError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || load_state(&owned))
        .await
        .unwrap_or_else(|_| {
            Err(StateError::TaskLost {
                path: path.to_path_buf(),
            })
        })
}

/// [`save_state`] on tokio's blocking pool. The state is encoded before this returns its
/// future's first poll completes, so the caller may go on changing it.
pub async fn save_state_async(path: &Path, state: &GateState) -> Result<(), StateError> {
    let bytes = encode(path, state)?;
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_atomically(&owned, &bytes))
        .await
        .unwrap_or_else(|_| {
            Err(StateError::TaskLost {
                path: path.to_path_buf(),
            })
        })
}

/// `<path>.tmp`: the name with `.tmp` appended, in the same directory (rename(2) is atomic
/// only within one file system).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

fn encode(path: &Path, state: &GateState) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(state).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = temp_path(path);
    let tmp_err = |source| StateError::WriteTemp {
        tmp: tmp.clone(),
        source,
    };
    let mut file = temp_options().open(&tmp).map_err(tmp_err)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; a leftover .tmp keeps its old mode.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(tmp_err)?;
    }
    file.write_all(bytes).map_err(tmp_err)?;
    // The data must be durable before the rename publishes it, or a crash could leave an
    // empty or short file under the real name.
    file.sync_all().map_err(tmp_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|source| StateError::Rename {
        tmp: tmp.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    let dir = parent_dir(path);
    sync_dir(dir).map_err(|source| StateError::SyncDirectory {
        dir: dir.to_path_buf(),
        source,
    })
}

fn temp_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::gate::decide::{decide, Credentials, SignalSeen, StartRequest};
    use crate::gate::policy::tests::{admin_input, input};
    use crate::gate::policy::{AdminDigit, AdminId, Policy, PolicyInput, SecurityInput};
    use crate::gate::WallTime;

    const NOW: WallTime = WallTime(1_000_000);

    fn policy() -> Policy {
        let mut i: PolicyInput = input();
        i.admins.push(admin_input(3, "1003"));
        i.security = SecurityInput {
            max_failures: 2,
            lock_s: 900,
            ..SecurityInput::default()
        };
        Policy::parse(i).unwrap()
    }

    fn id(s: &str) -> AdminId {
        AdminId::parse(s).unwrap()
    }

    fn source() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))
    }

    /// 1001 locked out, 1003 with an active callback, one source with failures.
    fn busy_state(p: &Policy) -> GateState {
        let mut s = GateState::new();
        for _ in 0..2 {
            s.record_failure(p, Some(&id("1001")), source(), NOW);
        }
        let req = StartRequest {
            source: IpAddr::V4(Ipv4Addr::LOCALHOST),
            credentials: Credentials::Valid(id("1003")),
            signal: SignalSeen::Matched(AdminDigit::new(3).unwrap()),
            authenticated_at: NOW,
            audit_available: true,
        };
        assert!(matches!(
            decide(p, &req, NOW, &mut s),
            crate::gate::decide::Decision::Allow { .. }
        ));
        assert!(s.is_locked(&id("1001"), NOW) && s.is_active(&id("1003")));
        s
    }

    #[test]
    fn lockouts_and_counters_survive_a_round_trip() {
        let p = policy();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let saved = busy_state(&p);
        save_state(&path, &saved).unwrap();
        let loaded = load_state(&path).unwrap();
        assert!(loaded.is_locked(&id("1001"), NOW));
        assert!(!loaded.is_locked(&id("1001"), NOW.plus(900)));
        assert_eq!(loaded.source_failures(source(), NOW, 900), 2);
        assert_eq!(loaded.recent_callbacks(&id("1003"), NOW), 1);
        assert!(
            !loaded.is_active(&id("1003")),
            "no callback survives a restart"
        );
        let mut expected = saved;
        expected.after_restart();
        while expected.poll_event().is_some() {}
        assert_eq!(loaded, expected);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn missing_file_is_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let s = load_state(&dir.path().join("state.json")).unwrap();
        assert_eq!(s, GateState::new());
    }

    #[test]
    fn corrupt_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for junk in [&b"{\"admins\":{\"1001\":"[..], b"", b"[1,2,3]", b"\xff\xfe"] {
            std::fs::write(&path, junk).unwrap();
            let err = load_state(&path).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("state.json") && msg.contains("refusing to start"),
                "{msg}"
            );
        }
    }

    #[test]
    fn leftover_temp_file_neither_breaks_load_nor_save() {
        let p = policy();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_state(&path, &busy_state(&p)).unwrap();
        // A crash between writing the temp file and the rename leaves this behind.
        std::fs::write(temp_path(&path), b"{\"admins\":{\"10").unwrap();
        assert!(load_state(&path).unwrap().is_locked(&id("1001"), NOW));
        save_state(&path, &GateState::new()).unwrap();
        assert_eq!(load_state(&path).unwrap(), GateState::new());
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn failed_save_leaves_the_old_file_intact() {
        let p = policy();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_state(&path, &busy_state(&p)).unwrap();
        // A directory where the temp file should go makes the write fail before the rename.
        std::fs::create_dir(temp_path(&path)).unwrap();
        let err = save_state(&path, &GateState::new()).unwrap_err();
        assert!(matches!(err, StateError::WriteTemp { .. }), "{err:?}");
        assert!(err.to_string().contains("state.json.tmp"));
        assert!(load_state(&path).unwrap().is_locked(&id("1001"), NOW));
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_STATE_BYTES + 1).unwrap();
        let err = load_state(&path).unwrap_err();
        assert!(matches!(err, StateError::TooLarge { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_owner_only_even_over_a_loose_leftover() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let tmp = temp_path(&path);
        std::fs::write(&tmp, b"x").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        save_state(&path, &GateState::new()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn async_wrappers_round_trip() {
        let p = policy();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save_state_async(&path, &busy_state(&p)).await.unwrap();
        let loaded = load_state_async(&path).await.unwrap();
        assert!(loaded.is_locked(&id("1001"), NOW));
    }
}
