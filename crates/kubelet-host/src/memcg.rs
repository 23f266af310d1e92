//! Kernel memory threshold notifications on cgroup v1 (upstream
//! `eviction/threshold_notifier_linux.go`): an eventfd registered in the memcg's
//! `cgroup.event_control` against `memory.usage_in_bytes`, which the kernel signals when the
//! usage crosses the value, so the eviction manager looks at once instead of at its next
//! 10 s pass. cgroup v2 has no such interface: there the manager keeps polling.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::unix::AsyncFd;

/// One armed threshold; dropping it closes the eventfd, which unregisters it.
#[derive(Debug)]
pub struct MemcgThreshold {
    fd: AsyncFd<OwnedFd>,
    _usage: std::fs::File,
}

impl MemcgThreshold {
    /// Arms a notification on the memcg at `dir` for `bytes` of usage.
    pub fn arm(dir: &Path, bytes: u64) -> io::Result<Self> {
        use rustix::event::{EventfdFlags, eventfd};
        let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let usage = std::fs::File::open(dir.join("memory.usage_in_bytes"))?;
        let line = format!("{} {} {bytes}", efd.as_raw_fd(), usage.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), line)?;
        // `new` is deprecated for fds the caller might close under the reactor; this one is
        // an OwnedFd the AsyncFd owns until it is dropped (and `register` needs unsafe, which
        // the workspace forbids).
        #[allow(deprecated)]
        let fd = AsyncFd::new(efd)?;
        Ok(Self { fd, _usage: usage })
    }

    /// Resolves when the usage has crossed the threshold (either way) since the last call.
    pub async fn crossed(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            match guard
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(io::Error::from))
            {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The eviction manager's notifiers: one armed threshold per key, re-armed when its value
/// changes; any crossing wakes [`MemcgNotifiers::crossed`].
#[derive(Debug)]
pub struct MemcgNotifiers {
    /// The memory controller's root (the node's memcg) and the pods' memcg.
    node_dir: PathBuf,
    pods_dir: PathBuf,
    armed: Mutex<HashMap<usize, (u64, tokio::task::AbortHandle)>>,
    notify: Arc<tokio::sync::Notify>,
}

/// Where the node's memcg is on cgroup v1.
pub const MEMCG_ROOT: &str = "/sys/fs/cgroup/memory";

impl MemcgNotifiers {
    /// `None` where memcg notifications do not exist (cgroup v2, or no memory controller
    /// mounted at `root`). `pods` is the pods' cgroup path under the controller.
    pub fn new(root: &Path, pods: &str) -> Option<Self> {
        if !root.join("cgroup.event_control").exists() {
            return None;
        }
        Some(Self {
            node_dir: root.to_path_buf(),
            pods_dir: root.join(pods.trim_start_matches('/')),
            armed: Mutex::default(),
            notify: Arc::default(),
        })
    }

    /// (Re)arms threshold `key` at `bytes` on the node's memcg or the pods'.
    pub fn arm(&self, key: usize, pods: bool, bytes: u64) -> io::Result<()> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        if armed.get(&key).is_some_and(|(b, _)| *b == bytes) {
            return Ok(());
        }
        let dir = if pods { &self.pods_dir } else { &self.node_dir };
        let t = MemcgThreshold::arm(dir, bytes)?;
        let notify = self.notify.clone();
        let task = tokio::spawn(async move {
            while t.crossed().await.is_ok() {
                notify.notify_one();
            }
        });
        if let Some((_, old)) = armed.insert(key, (bytes, task.abort_handle())) {
            old.abort();
        }
        Ok(())
    }

    /// Resolves when an armed threshold was crossed.
    pub async fn crossed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for MemcgNotifiers {
    fn drop(&mut self) {
        for (_, (_, task)) in self.armed.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            task.abort();
        }
    }
}
