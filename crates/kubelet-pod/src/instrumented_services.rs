//! A [`RuntimeService`] that counts and times every call (upstream
//! `kuberuntime/instrumented_services.go`), with upstream's operation names.

use crate::metrics::METRICS;
use futures::stream::BoxStream;
use kubelet_cri::{Result, RuntimeEvent, RuntimeService, api};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct InstrumentedRuntime(pub Arc<dyn RuntimeService>);

async fn timed<T>(op: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let t0 = Instant::now();
    let r = f.await;
    METRICS.runtime_op(op, t0.elapsed().as_secs_f64(), r.is_err());
    r
}

#[async_trait::async_trait]
impl RuntimeService for InstrumentedRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        timed("version", self.0.version()).await
    }
    async fn status(&self) -> Result<api::StatusResponse> {
        timed("status", self.0.status()).await
    }
    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        timed("status", self.0.status_info()).await
    }
    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String> {
        timed(
            "run_podsandbox",
            self.0.run_pod_sandbox(config, runtime_handler),
        )
        .await
    }
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        timed("stop_podsandbox", self.0.stop_pod_sandbox(id)).await
    }
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        timed("remove_podsandbox", self.0.remove_pod_sandbox(id)).await
    }
    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        timed("podsandbox_status", self.0.pod_sandbox_status(id)).await
    }
    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        timed("list_podsandbox", self.0.list_pod_sandbox(filter)).await
    }
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        timed(
            "create_container",
            self.0.create_container(sandbox_id, config, sandbox_config),
        )
        .await
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        timed("start_container", self.0.start_container(id)).await
    }
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        timed("stop_container", self.0.stop_container(id, timeout)).await
    }
    async fn remove_container(&self, id: &str) -> Result<()> {
        timed("remove_container", self.0.remove_container(id)).await
    }
    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        timed("reopen_container_log", self.0.reopen_container_log(id)).await
    }
    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        timed("list_containers", self.0.list_containers(filter)).await
    }
    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        timed("container_status", self.0.container_status(id)).await
    }
    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse> {
        timed("exec_sync", self.0.exec_sync(id, cmd, timeout)).await
    }
    async fn list_images(&self) -> Result<Vec<api::Image>> {
        timed("list_images", self.0.list_images()).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        timed("image_status", self.0.image_status(image)).await
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        timed("remove_image", self.0.remove_image(image)).await
    }
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        timed("pull_image", self.0.pull_image(image, auth, sandbox_config)).await
    }
    async fn pod_sandbox_pid(&self, id: &str) -> Result<Option<u32>> {
        timed("podsandbox_status", self.0.pod_sandbox_pid(id)).await
    }
    async fn exec(&self, req: api::ExecRequest) -> Result<String> {
        timed("exec", self.0.exec(req)).await
    }
    async fn attach(&self, req: api::AttachRequest) -> Result<String> {
        timed("attach", self.0.attach(req)).await
    }
    async fn port_forward(&self, req: api::PortForwardRequest) -> Result<String> {
        timed("port_forward", self.0.port_forward(req)).await
    }
    async fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        timed("list_container_stats", self.0.list_container_stats(filter)).await
    }
    async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        timed("image_fs_info", self.0.image_fs_info()).await
    }
    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent>>> {
        self.0.events().await
    }
}
