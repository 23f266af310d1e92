//! An in-memory runtime that records every call, for unit tests of the sync loop.

use crate::api;
use crate::{CriError, Result, RuntimeEvent, RuntimeService};
use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;

#[derive(Debug, Default)]
struct State {
    status_info: std::collections::HashMap<String, String>,
    next_id: u64,
    clock_ns: i64,
    sandboxes: BTreeMap<String, api::PodSandboxStatus>,
    containers: BTreeMap<String, api::ContainerStatus>,
    container_sandbox: BTreeMap<String, String>,
    container_annotations: BTreeMap<String, std::collections::HashMap<String, String>>,
    images: HashSet<String>,
    calls: Vec<String>,
    fail: BTreeMap<&'static str, String>,
    /// Images a pull can fetch, and the user the registry wants (None: anonymous).
    registry: BTreeMap<String, Option<String>>,
    /// CPU nanoseconds and working-set bytes reported per container id.
    usage: BTreeMap<String, (u64, u64)>,
    /// The exit code ExecSync reports.
    exec_exit: i32,
}

impl State {
    /// The containers created in `sandbox`.
    fn containers_of(&self, sandbox: &str) -> Vec<String> {
        self.container_sandbox
            .iter()
            .filter(|(_, sb)| *sb == sandbox)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Moves the clock on by a nanosecond, so later events sort after earlier ones.
    fn step(&mut self) -> i64 {
        self.clock_ns += 1;
        self.clock_ns
    }
}

#[derive(Debug)]
pub struct FakeRuntime {
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        let (events, _) = broadcast::channel(64);
        FakeRuntime {
            state: Mutex::new(State::default()),
            events,
        }
    }
}

impl FakeRuntime {
    /// Sets what ListContainerStats reports for a container.
    pub fn set_usage(&self, id: &str, cpu_ns: u64, working_set: u64) {
        self.lock()
            .usage
            .insert(id.to_string(), (cpu_ns, working_set));
    }

    /// Sets what a verbose Status reports as the runtime's info.
    pub fn set_status_info(&self, info: std::collections::HashMap<String, String>) {
        self.lock().status_info = info;
    }

    /// Sets the exit code every later ExecSync reports (0 at first).
    pub fn set_exec_exit(&self, code: i32) {
        self.lock().exec_exit = code;
    }

    pub fn with_images(images: &[&str]) -> Self {
        let f = Self::default();
        f.lock().images = images.iter().map(|s| s.to_string()).collect();
        f
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, op: &'static str, arg: &str) -> Result<()> {
        let mut s = self.lock();
        s.calls.push(if arg.is_empty() {
            op.to_string()
        } else {
            format!("{op} {arg}")
        });
        match s.fail.get(op) {
            Some(msg) => Err(unknown(op, msg.clone())),
            None => Ok(()),
        }
    }

    /// Makes every later call of `op` fail with `message`.
    pub fn fail(&self, op: &'static str, message: &str) {
        self.lock().fail.insert(op, message.into());
    }

    /// Lets `PullImage` fetch `image`, with `user` as the only accepted credential.
    pub fn serve_image(&self, image: &str, user: Option<&str>) {
        self.lock()
            .registry
            .insert(image.into(), user.map(str::to_string));
    }

    pub fn heal(&self, op: &'static str) {
        self.lock().fail.remove(op);
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Simulates a container exiting by itself.
    pub fn exit_container(&self, id: &str, code: i32) {
        let mut s = self.lock();
        s.clock_ns += 1_000_000_000;
        let now = s.clock_ns;
        if let Some(c) = s.containers.get_mut(id) {
            c.state = api::ContainerState::ContainerExited as i32;
            c.exit_code = code;
            c.finished_at = now;
            c.reason = if code == 0 { "Completed" } else { "Error" }.into();
        }
        drop(s);
        let _ = self.events.send(RuntimeEvent::Exited {
            container_id: id.into(),
            exit_status: code as u32,
        });
    }

    /// Simulates a sandbox dying (e.g. its network namespace going away).
    pub fn kill_sandbox(&self, id: &str) {
        if let Some(sb) = self.lock().sandboxes.get_mut(id) {
            sb.state = api::PodSandboxState::SandboxNotready as i32;
        }
    }

    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    pub fn running_containers(&self) -> Vec<String> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .filter_map(|c| c.metadata.as_ref().map(|m| m.name.clone()))
            .collect()
    }

    fn tick(s: &mut State) -> (String, i64) {
        s.next_id += 1;
        s.clock_ns += 1_000_000_000;
        (format!("{:016x}", s.next_id), s.clock_ns)
    }
}

/// The error a runtime gives for a failure it has no code for.
fn unknown(op: &'static str, message: String) -> CriError {
    CriError::Rpc {
        op,
        code: tonic::Code::Unknown,
        message,
    }
}

/// The entry for `id`, or NotFound.
fn found<T: Clone>(map: &BTreeMap<String, T>, id: &str) -> Result<T> {
    map.get(id)
        .cloned()
        .ok_or_else(|| CriError::NotFound(id.into()))
}

fn labels_match(
    have: &std::collections::HashMap<String, String>,
    want: &std::collections::HashMap<String, String>,
) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<api::VersionResponse> {
        self.record("Version", "")?;
        Ok(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status_info(&self) -> Result<std::collections::HashMap<String, String>> {
        self.record("Status", "verbose")?;
        Ok(self.lock().status_info.clone())
    }

    async fn status(&self) -> Result<api::StatusResponse> {
        self.record("Status", "")?;
        let cond = |t: &str| api::RuntimeCondition {
            r#type: t.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            info: Default::default(),
        })
    }

    async fn run_pod_sandbox(
        &self,
        config: api::PodSandboxConfig,
        _handler: String,
    ) -> Result<String> {
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        self.record("RunPodSandbox", name)?;
        let mut s = self.lock();
        let (id, now) = Self::tick(&mut s);
        let host = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|c| c.namespace_options.as_ref())
            .is_some_and(|n| n.network == api::NamespaceMode::Node as i32);
        let ip = if host {
            String::new()
        } else {
            format!("10.88.0.{}", s.next_id % 250 + 2)
        };
        s.sandboxes.insert(
            id.clone(),
            api::PodSandboxStatus {
                id: id.clone(),
                metadata: config.metadata.clone(),
                state: api::PodSandboxState::SandboxReady as i32,
                created_at: now,
                network: Some(api::PodSandboxNetworkStatus {
                    ip,
                    additional_ips: vec![],
                }),
                linux: config.linux.as_ref().map(|l| api::LinuxPodSandboxStatus {
                    namespaces: Some(api::Namespace {
                        options: l
                            .security_context
                            .as_ref()
                            .and_then(|c| c.namespace_options.clone()),
                    }),
                }),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                runtime_handler: String::new(),
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record("StopPodSandbox", id)?;
        let mut s = self.lock();
        let now = s.clock_ns;
        for c in s.containers_of(id) {
            if let Some(c) = s
                .containers
                .get_mut(&c)
                .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            {
                c.state = api::ContainerState::ContainerExited as i32;
                c.exit_code = 137;
                c.finished_at = now;
            }
        }
        if let Some(sb) = s.sandboxes.get_mut(id) {
            sb.state = api::PodSandboxState::SandboxNotready as i32;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.record("RemovePodSandbox", id)?;
        let mut s = self.lock();
        s.sandboxes.remove(id);
        for c in s.containers_of(id) {
            s.containers.remove(&c);
            s.container_sandbox.remove(&c);
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        self.record("PodSandboxStatus", id)?;
        found(&self.lock().sandboxes, id)
    }

    async fn list_pod_sandbox(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        self.record("ListPodSandbox", "")?;
        Ok(self
            .lock()
            .sandboxes
            .values()
            .filter(|sb| {
                filter.as_ref().is_none_or(|f| {
                    (f.id.is_empty() || f.id == sb.id)
                        && f.state.as_ref().is_none_or(|st| st.state == sb.state)
                        && labels_match(&sb.labels, &f.label_selector)
                })
            })
            .map(|sb| api::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.metadata.clone(),
                state: sb.state,
                created_at: sb.created_at,
                labels: sb.labels.clone(),
                annotations: sb.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        _sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        self.record("CreateContainer", name)?;
        let mut s = self.lock();
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let known = s.images.contains(&image)
            || image
                .strip_prefix("sha256:")
                .is_some_and(|i| s.images.contains(i));
        if !known {
            return Err(CriError::Rpc {
                op: "CreateContainer",
                code: tonic::Code::NotFound,
                message: format!("image {image} not found"),
            });
        }
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(CriError::NotFound(sandbox_id.into()));
        }
        let (id, now) = Self::tick(&mut s);
        s.container_sandbox.insert(id.clone(), sandbox_id.into());
        s.container_annotations
            .insert(id.clone(), config.annotations.clone());
        s.containers.insert(
            id.clone(),
            api::ContainerStatus {
                id: id.clone(),
                metadata: config.metadata.clone(),
                state: api::ContainerState::ContainerCreated as i32,
                created_at: now,
                image: config.image.clone(),
                image_ref: format!("sha256:{image}"),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                log_path: config.log_path.clone(),
                ..Default::default()
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.record("StartContainer", id)?;
        let mut s = self.lock();
        let now = s.step();
        let c = s
            .containers
            .get_mut(id)
            .ok_or_else(|| CriError::NotFound(id.into()))?;
        c.state = api::ContainerState::ContainerRunning as i32;
        c.started_at = now;
        drop(s);
        let _ = self.events.send(RuntimeEvent::Started {
            container_id: id.into(),
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        self.record("StopContainer", id)?;
        let mut s = self.lock();
        let now = s.step();
        if let Some(c) = s
            .containers
            .get_mut(id)
            .filter(|c| c.state != api::ContainerState::ContainerExited as i32)
        {
            c.state = api::ContainerState::ContainerExited as i32;
            c.exit_code = 137;
            c.reason = "Error".into();
            c.finished_at = now;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.record("RemoveContainer", id)?;
        let mut s = self.lock();
        s.containers.remove(id);
        s.container_sandbox.remove(id);
        Ok(())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.record("ReopenContainerLog", id)?;
        match self.lock().containers.get(id) {
            Some(c) if !c.log_path.is_empty() => {
                // A runtime opens a fresh file where the old one was.
                let _ = std::fs::File::create(&c.log_path);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(CriError::NotFound(id.into())),
        }
    }

    async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        self.record("ListContainers", "")?;
        let s = self.lock();
        Ok(s.containers
            .values()
            .filter(|c| {
                let sb = s.container_sandbox.get(&c.id).cloned().unwrap_or_default();
                filter.as_ref().is_none_or(|f| {
                    (f.id.is_empty() || f.id == c.id)
                        && (f.pod_sandbox_id.is_empty() || f.pod_sandbox_id == sb)
                        && f.state.as_ref().is_none_or(|st| st.state == c.state)
                        && labels_match(&c.labels, &f.label_selector)
                })
            })
            .map(|c| api::Container {
                id: c.id.clone(),
                pod_sandbox_id: s.container_sandbox.get(&c.id).cloned().unwrap_or_default(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        self.record("ContainerStatus", id)?;
        found(&self.lock().containers, id)
    }

    async fn exec_sync(
        &self,
        id: &str,
        _cmd: Vec<String>,
        _timeout: Duration,
    ) -> Result<api::ExecSyncResponse> {
        self.record("ExecSync", id)?;
        Ok(api::ExecSyncResponse {
            exit_code: self.lock().exec_exit,
            ..Default::default()
        })
    }

    async fn list_container_stats(
        &self,
        _filter: Option<api::ContainerStatsFilter>,
    ) -> Result<Vec<api::ContainerStats>> {
        self.record("ListContainerStats", "")?;
        let s = self.lock();
        let now = s.clock_ns;
        Ok(s.containers
            .values()
            .map(|c| {
                let (cpu, mem) = s.usage.get(&c.id).copied().unwrap_or_default();
                api::ContainerStats {
                    attributes: Some(api::ContainerAttributes {
                        id: c.id.clone(),
                        metadata: c.metadata.clone(),
                        labels: c.labels.clone(),
                        annotations: c.annotations.clone(),
                    }),
                    cpu: Some(api::CpuUsage {
                        timestamp: now,
                        usage_core_nano_seconds: Some(api::UInt64Value { value: cpu }),
                    }),
                    memory: Some(api::MemoryUsage {
                        timestamp: now,
                        working_set_bytes: Some(api::UInt64Value { value: mem }),
                    }),
                    writable_layer: None,
                }
            })
            .collect())
    }

    async fn list_images(&self) -> Result<Vec<api::Image>> {
        self.record("ListImages", "")?;
        Ok(self
            .lock()
            .images
            .iter()
            .map(|i| api::Image {
                id: format!("sha256:{i}"),
                repo_tags: vec![i.clone()],
                size: 1024,
                ..Default::default()
            })
            .collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        self.record("ImageStatus", image)?;
        Ok(self.lock().images.contains(image).then(|| api::Image {
            id: format!("sha256:{image}"),
            repo_tags: vec![image.into()],
            ..Default::default()
        }))
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.record("RemoveImage", image)?;
        let name = image.strip_prefix("sha256:").unwrap_or(image).to_string();
        self.lock().images.remove(&name);
        Ok(())
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
        _sandbox_config: Option<api::PodSandboxConfig>,
    ) -> Result<String> {
        let user = auth.map(|a| a.username);
        self.record(
            "PullImage",
            &format!("{image} user={}", user.as_deref().unwrap_or("-")),
        )?;
        let mut s = self.lock();
        let message = match s.registry.get(image).cloned() {
            Some(want) if want.is_none() || want == user => {
                s.images.insert(image.into());
                return Ok(format!("sha256:{image}"));
            }
            Some(_) => format!("pulling {image}: 401 Unauthorized"),
            None => format!("failed to resolve reference {image:?}: no registry"),
        };
        Err(unknown("PullImage", message))
    }

    async fn events(&self) -> Result<BoxStream<'static, Result<RuntimeEvent>>> {
        let rx = self.events.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((Ok(e), rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }
}
