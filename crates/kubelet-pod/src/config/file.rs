//! The file source (upstream `pkg/kubelet/config/file.go`, `file_linux.go`): a directory of
//! manifests (or one file) read in full on every inotify event and every
//! `fileCheckFrequency`, each read sent as the source's full set.
//!
//! As upstream: a missing path is an empty set (the source counts as seen); dotfiles,
//! subdirectories and non-regular files are skipped; a manifest that does not decode or
//! validate is left out of the set, so a running pod whose manifest broke is stopped. Here
//! it is also reported once per file and error as a `FailedValidation` event on the Node.

use super::SourceUpdate;
use k8s_openapi::api::core::v1::Pod;
use kubelet_api::events::{Recorder, WARNING, node_ref};
use kubelet_core::config::{MAX_MANIFEST_BYTES, Source, static_pod};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug)]
pub struct FileSource {
    pub path: PathBuf,
    pub node: String,
    pub period: Duration,
    pub recorder: Recorder,
}

/// One read of the path: the pods, and per manifest that failed, why.
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Vec<Pod>,
    pub errors: BTreeMap<PathBuf, String>,
    pub missing: bool,
    /// The path could not be read as a whole (or its one manifest did not parse): nothing
    /// is sent, and the pods stay as they were (upstream's `listConfig` error).
    pub fatal: bool,
}

fn read_manifest(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(format!("larger than {MAX_MANIFEST_BYTES} bytes"));
    }
    Ok(buf)
}

/// Reads the path as upstream's `extractFromPath` does.
pub fn scan(path: &Path, node: &str) -> Scan {
    let mut out = Scan::default();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.missing = true;
            return out;
        }
        Err(e) => {
            out.errors.insert(path.to_path_buf(), e.to_string());
            out.fatal = true;
            return out;
        }
    };
    let files: Vec<PathBuf> = if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(d) => d,
            Err(e) => {
                out.errors.insert(path.to_path_buf(), e.to_string());
                out.fatal = true;
                return out;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| {
                // Followed, as Go's os.Stat does: a symlinked manifest counts.
                let regular = std::fs::metadata(e.path()).is_ok_and(|m| m.is_file());
                if !regular {
                    debug!(path = %e.path().display(), "not a regular file; skipped");
                }
                regular
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    } else {
        // One file: if it does not parse, upstream keeps the pods as they were.
        out.fatal = true;
        vec![path.to_path_buf()]
    };
    let single = out.fatal;
    out.fatal = false;
    for f in files {
        match read_manifest(&f)
            .and_then(|b| static_pod(&b, Source::File, node).map_err(|e| e.to_string()))
        {
            Ok(p) => out.pods.push(p),
            Err(e) => {
                out.errors.insert(f, e);
                out.fatal |= single;
            }
        }
    }
    out
}

/// An inotify watch on the path: readable when anything in it changes.
fn watch(path: &Path) -> std::io::Result<AsyncFd<OwnedFd>> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    inotify::add_watch(
        &fd,
        path,
        WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MODIFY
            | WatchFlags::CLOSE_WRITE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::ATTRIB
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF,
    )?;
    // Deprecated because a borrowed fd could be closed under the reactor; this one is
    // owned by the AsyncFd, which is the sound case (and `register` needs unsafe).
    #[allow(deprecated)]
    AsyncFd::new(fd)
}

/// Reads what the watch has queued; `false` when the watch ended (the path went).
fn drain(fd: &OwnedFd) -> bool {
    use rustix::fs::inotify::{ReadFlags, Reader};
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut alive = true;
    let mut reader = Reader::new(fd, &mut buf);
    loop {
        match reader.next() {
            Ok(ev) => {
                if ev
                    .events()
                    .intersects(ReadFlags::IGNORED | ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
                {
                    alive = false;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return alive,
        }
    }
}

impl FileSource {
    pub async fn run(self, tx: mpsc::Sender<SourceUpdate>, cancel: CancellationToken) {
        let mut watcher: Option<AsyncFd<OwnedFd>> = None;
        let mut reported: BTreeMap<PathBuf, String> = BTreeMap::new();
        let mut said_missing = false;
        loop {
            if watcher.is_none() {
                watcher = watch(&self.path).ok();
            }
            let path = self.path.clone();
            let node = self.node.clone();
            let scan = tokio::task::spawn_blocking(move || scan(&path, &node))
                .await
                .unwrap_or_else(|_| Scan {
                    fatal: true,
                    ..Default::default()
                });
            if scan.missing {
                if !said_missing {
                    info!(path = %self.path.display(), "static pod path does not exist, ignoring");
                    said_missing = true;
                }
            } else {
                said_missing = false;
            }
            for (f, e) in &scan.errors {
                if reported.get(f) != Some(e) {
                    warn!(file = %f.display(), error = %e, "could not process static pod manifest; left out");
                    self.recorder.emit(
                        node_ref(&self.node),
                        WARNING,
                        "FailedValidation",
                        format!(
                            "Error validating static pod manifest {}: {e}, ignoring",
                            f.display()
                        ),
                    );
                }
            }
            reported = scan.errors;
            if !scan.fatal {
                let set = SourceUpdate::Set(Source::File, scan.pods);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = tx.send(set) => if r.is_err() { return },
                }
            }
            let changed = async {
                match &watcher {
                    Some(w) => match w.readable().await {
                        Ok(mut g) => {
                            let alive = drain(g.get_inner());
                            g.clear_ready();
                            alive
                        }
                        Err(_) => false,
                    },
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                alive = changed => {
                    if !alive {
                        watcher = None;
                    }
                    // Editors write in several steps: read once they are done.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let mut ended = false;
                    if let Some(w) = &watcher
                        && let Some(Ok(mut g)) = futures::FutureExt::now_or_never(w.readable())
                    {
                        ended = !drain(g.get_inner());
                        g.clear_ready();
                    }
                    if ended {
                        watcher = None;
                    }
                }
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }
}
