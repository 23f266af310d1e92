//! Container log rotation (upstream `pkg/kubelet/logs`): every 10 s, the log of a running
//! container that reached `containerLogMaxSize` is renamed with a timestamp and the runtime
//! is asked to reopen it; the earlier rotated files are gzipped, and the oldest go so that at
//! most `containerLogMaxFiles` files remain, the live one included.

use kubelet_cri::{RuntimeService, api};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Upstream's log monitoring period.
pub const LOG_MONITOR_PERIOD: Duration = Duration::from_secs(10);

const TMP_SUFFIX: &str = ".tmp";
const GZ_SUFFIX: &str = ".gz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    pub max_bytes: u64,
    pub max_files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("rotating {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("reopening the log of container {id}: {source}")]
    Reopen {
        id: String,
        source: kubelet_cri::CriError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RotateError + '_ {
    move |source| RotateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Rotated files of `log` (`<log>.*`), sorted oldest first (their suffix is a timestamp).
fn rotated_logs(log: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Ok(vec![]);
    };
    let prefix = format!("{name}.");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    logs.sort();
    Ok(logs)
}

/// Upstream's `isInUse`: temporary files are leftovers of an interrupted compression, and an
/// uncompressed file whose `.gz` exists was already compressed.
fn in_use(l: &Path, logs: &[PathBuf]) -> bool {
    let s = l.to_string_lossy();
    if s.ends_with(TMP_SUFFIX) {
        return false;
    }
    if s.ends_with(GZ_SUFFIX) {
        return true;
    }
    let gz = format!("{s}{GZ_SUFFIX}");
    !logs.iter().any(|o| o.to_string_lossy() == gz)
}

fn compress(l: &Path) -> io::Result<()> {
    let gz = PathBuf::from(format!("{}{GZ_SUFFIX}", l.display()));
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", gz.display()));
    let mut src = std::fs::File::open(l)?;
    let dst = std::fs::File::create(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(dst, flate2::Compression::default());
    let done = io::copy(&mut src, &mut enc)
        .and_then(|_| enc.finish())
        .and_then(|f| f.sync_all());
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(l)
}

/// The file-system part of one rotation: drop leftovers and the oldest rotated files (keeping
/// `max_files - 2`, as the live file and the one rotated now make up the rest), compress the
/// remaining uncompressed ones, then rename the live file to `<log>.<stamp>`, which is returned.
pub fn prepare_rotation(
    log: &Path,
    policy: LogPolicy,
    stamp: &str,
) -> Result<PathBuf, RotateError> {
    let logs = rotated_logs(log).map_err(io_err(log))?;
    let (keep, unused): (Vec<PathBuf>, Vec<PathBuf>) =
        logs.iter().cloned().partition(|l| in_use(l, &logs));
    for l in unused {
        std::fs::remove_file(&l).map_err(io_err(&l))?;
    }
    let max_rotated = policy.max_files.saturating_sub(2);
    let excess = keep.len().saturating_sub(max_rotated);
    for l in &keep[..excess] {
        std::fs::remove_file(l).map_err(io_err(l))?;
    }
    for l in &keep[excess..] {
        if !l.to_string_lossy().ends_with(GZ_SUFFIX) {
            compress(l).map_err(io_err(l))?;
        }
    }
    let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
    std::fs::rename(log, &rotated).map_err(io_err(log))?;
    Ok(rotated)
}

#[derive(Debug, Clone)]
pub struct ContainerLogManager {
    rt: Arc<dyn RuntimeService>,
    policy: LogPolicy,
    /// Names the rotated files.
    clock: kubelet_core::clock::SharedClock,
}

impl ContainerLogManager {
    pub fn new(
        rt: Arc<dyn RuntimeService>,
        policy: LogPolicy,
        clock: kubelet_core::clock::SharedClock,
    ) -> Self {
        ContainerLogManager { rt, policy, clock }
    }

    /// One pass over the running containers, as upstream's `rotateLogs`.
    pub async fn rotate_logs(&self) {
        let filter = api::ContainerFilter {
            state: Some(api::ContainerStateValue {
                state: api::ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        let running = match self.rt.list_containers(Some(filter)).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "listing containers for log rotation failed");
                return;
            }
        };
        for c in running {
            let status = match self.rt.container_status(&c.id).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(id = %c.id, error = %e, "no status for log rotation");
                    continue;
                }
            };
            if status.log_path.is_empty() {
                continue;
            }
            let log = PathBuf::from(&status.log_path);
            let size = match std::fs::metadata(&log) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Someone removed it: have the runtime open a new one, as upstream does.
                    if let Err(e) = self.rt.reopen_container_log(&c.id).await {
                        debug!(id = %c.id, error = %e, "reopening a missing log failed");
                    }
                    continue;
                }
                Err(e) => {
                    debug!(log = %log.display(), error = %e, "cannot stat container log");
                    continue;
                }
            };
            if size < self.policy.max_bytes {
                continue;
            }
            match self.rotate(&c.id, &log).await {
                Ok(to) => {
                    info!(id = %c.id, log = %log.display(), rotated = %to.display(), "container log rotated")
                }
                Err(e) => warn!(id = %c.id, error = %e, "container log rotation failed"),
            }
        }
    }

    async fn rotate(&self, id: &str, log: &Path) -> Result<PathBuf, RotateError> {
        let stamp = self.clock.now().strftime("%Y%m%d-%H%M%S").to_string();
        let (policy, path) = (self.policy, log.to_path_buf());
        // Compressing reads and writes whole files: off the runtime's threads.
        let rotated = tokio::task::spawn_blocking(move || prepare_rotation(&path, policy, &stamp))
            .await
            .map_err(|e| RotateError::Io {
                path: log.display().to_string(),
                source: io::Error::other(e),
            })??;
        if let Err(source) = self.rt.reopen_container_log(id).await {
            // Put it back, so the runtime keeps writing where readers look.
            let _ = std::fs::rename(&rotated, log);
            return Err(RotateError::Reopen {
                id: id.to_string(),
                source,
            });
        }
        Ok(rotated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotation_compresses_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("krs-logrot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        let policy = LogPolicy {
            max_bytes: 10,
            max_files: 3,
        };
        // leftovers: an interrupted compression and an already-compressed original
        std::fs::write(dir.join("0.log.20260101-000000.gz.tmp"), "x").unwrap();
        std::fs::write(dir.join("0.log.20260101-000001"), "old").unwrap();
        std::fs::write(dir.join("0.log.20260101-000001.gz"), "gz").unwrap();
        std::fs::write(dir.join("1.log"), "another container's").unwrap();
        for (i, stamp) in ["20260101-000002", "20260101-000003", "20260101-000004"]
            .iter()
            .enumerate()
        {
            std::fs::write(&log, format!("line {i}\n")).unwrap();
            let to = prepare_rotation(&log, policy, stamp).unwrap();
            assert_eq!(to, dir.join(format!("0.log.{stamp}")));
        }
        // max 3 files: the live one (reopened by the runtime) + the newest, uncompressed,
        // + one compressed
        assert_eq!(
            names(&dir),
            vec!["0.log.20260101-000003.gz", "0.log.20260101-000004", "1.log"]
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dir.join("0.log.20260101-000003.gz")).unwrap(),
        )
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "line 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn only_logs_over_the_limit_rotate_and_the_runtime_reopens_them() {
        use kubelet_cri::fake::FakeRuntime;
        let dir = std::env::temp_dir().join(format!("krs-logmgr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
        let sb = rt
            .run_pod_sandbox(api::PodSandboxConfig::default(), String::new())
            .await
            .unwrap();
        let mut ids = vec![];
        for (name, bytes) in [("big", 100), ("small", 5)] {
            let log = dir.join(format!("{name}.log"));
            std::fs::write(&log, "x".repeat(bytes)).unwrap();
            let cfg = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: name.into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                log_path: log.display().to_string(),
                ..Default::default()
            };
            let id = rt
                .create_container(&sb, cfg, api::PodSandboxConfig::default())
                .await
                .unwrap();
            rt.start_container(&id).await.unwrap();
            ids.push(id);
        }
        let m = ContainerLogManager::new(
            rt.clone(),
            LogPolicy {
                max_bytes: 50,
                max_files: 5,
            },
            kubelet_core::clock::system(),
        );
        m.rotate_logs().await;
        let reopened: Vec<String> = rt
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("ReopenContainerLog"))
            .collect();
        assert_eq!(reopened, vec![format!("ReopenContainerLog {}", ids[0])]);
        let files = names(&dir);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files.iter().any(|f| f.starts_with("big.log.")), "{files:?}");
        assert_eq!(std::fs::metadata(dir.join("big.log")).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(dir.join("small.log")).unwrap().len(), 5);
        // a failed reopen puts the file back
        rt.fail("ReopenContainerLog", "boom");
        std::fs::write(dir.join("big.log"), "y".repeat(100)).unwrap();
        m.rotate_logs().await;
        assert_eq!(std::fs::metadata(dir.join("big.log")).unwrap().len(), 100);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
