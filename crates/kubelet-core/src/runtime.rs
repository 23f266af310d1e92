//! A runtime-neutral snapshot of one pod's sandboxes and containers, built by the CRI layer
//! from `ListPodSandbox`/`ListContainers`/`ContainerStatus` and consumed by the pure logic here.

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    /// The restart count recorded on the container when it was created.
    pub restart_count: u32,
    pub hash: Option<u64>,
    pub state: ContainerState,
    /// Unix nanoseconds, 0 when unknown.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    /// The runtime's own name ("containerd"), for `containerID: containerd://<id>`.
    pub runtime: String,
    /// The grace period recorded on the container (deletion, else termination grace), used
    /// to stop it when the API object is gone.
    pub grace_period: Option<i64>,
    /// Where the container's log file is on the host.
    pub log_path: String,
    /// The sandbox the container runs in.
    pub sandbox_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxStatus {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    pub ip: String,
    pub additional_ips: Vec<String>,
    pub host_network: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodStatus {
    /// Newest first.
    pub sandboxes: Vec<SandboxStatus>,
    /// Newest first (by creation time), across all attempts.
    pub containers: Vec<ContainerStatus>,
}

impl PodStatus {
    /// The newest container of that name, as upstream's `FindContainerStatusByName`.
    pub fn find(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The newest and the one before it, for `state` and `lastState`.
    pub fn latest_two(&self, name: &str) -> (Option<&ContainerStatus>, Option<&ContainerStatus>) {
        let mut it = self.containers.iter().filter(|c| c.name == name);
        (it.next(), it.next())
    }

    pub fn sort(&mut self) {
        self.sandboxes
            .sort_by_key(|s| std::cmp::Reverse(s.created_at));
        self.containers
            .sort_by_key(|c| std::cmp::Reverse(c.created_at));
    }
}

/// Maps a runtime wall-clock timestamp (unix ns) onto the monotonic clock, given the pair
/// (`now`, `now_unix_ns`) read at the same moment. Lets back-off run on a pausable clock.
pub fn instant_of(unix_ns: i64, now: Instant, now_unix_ns: i64) -> Instant {
    let ago = now_unix_ns.saturating_sub(unix_ns).max(0) as u64;
    now.checked_sub(std::time::Duration::from_nanos(ago))
        .unwrap_or(now)
}
