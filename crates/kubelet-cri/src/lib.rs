//! The kubelet's view of the container runtime.
//!
//! [`RuntimeService`] is the seam: [`remote::RemoteRuntime`] speaks CRI `runtime.v1` (plus
//! containerd's event stream) over a unix socket with a deadline on every call, and
//! [`fake::FakeRuntime`] keeps state in memory and records calls for unit tests.

pub mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod logs;
pub mod remote;

pub use cri_api::runtime::v1 as api;
pub use error::CriError;

use async_trait::async_trait;
use futures::stream::BoxStream;
use std::time::Duration;

pub type Result<T, E = CriError> = std::result::Result<T, E>;

/// A container lifecycle event pushed by the runtime, used to wake the PLEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Started {
        container_id: String,
    },
    Exited {
        container_id: String,
        exit_status: u32,
    },
    Oom {
        container_id: String,
    },
}

#[async_trait]
pub trait RuntimeService: Send + Sync + std::fmt::Debug + 'static {
    async fn version(&self) -> Result<api::VersionResponse>;
    async fn status(&self) -> Result<api::StatusResponse>;
    /// The runtime's verbose `Status` info (containerd: its CRI config as JSON under
    /// "config"); empty where the runtime says nothing.
    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        Ok(Default::default())
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus>;
    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>>;

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops with SIGTERM, then SIGKILL after `timeout`.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Asks the runtime to reopen the container's log file (after the kubelet renamed it).
    async fn reopen_container_log(&self, id: &str) -> Result<()>;
    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>>;
    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus>;
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse>;

    async fn list_images(&self) -> Result<Vec<api::Image>>;
    /// `None` when the image is not present.
    async fn image_status(&self, image: &str) -> Result<Option<api::Image>>;
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String>;
    /// Removes an image (by ID or reference); an image already gone is no error.
    async fn remove_image(&self, image: &str) -> Result<()>;

    /// The process id of the sandbox (its network namespace holder), from the runtime's
    /// verbose sandbox status; `None` where the runtime does not say.
    async fn pod_sandbox_pid(&self, _id: &str) -> Result<Option<u32>> {
        Ok(None)
    }
    /// Streaming: the URL of the runtime's streaming server for this exec, attach or
    /// port-forward session (CRI Exec, Attach, PortForward).
    async fn exec(&self, _req: api::ExecRequest) -> Result<String> {
        Err(CriError::NotFound("streaming is not supported".into()))
    }
    async fn attach(&self, _req: api::AttachRequest) -> Result<String> {
        Err(CriError::NotFound("streaming is not supported".into()))
    }
    async fn port_forward(&self, _req: api::PortForwardRequest) -> Result<String> {
        Err(CriError::NotFound("streaming is not supported".into()))
    }
    /// Resource usage of the containers (CRI ListContainerStats).
    async fn list_container_stats(
        &self,
        _filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        Ok(vec![])
    }
    /// Usage of the filesystems holding images (CRI ImageFsInfo).
    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        Ok(vec![])
    }

    /// Pushes container start/exit events, where the runtime offers them. The stream ends
    /// when the connection drops; callers resubscribe and relist.
    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent>>>;
}
