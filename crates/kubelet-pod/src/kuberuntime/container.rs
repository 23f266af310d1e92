//! Containers: their CRI config, start (with hooks and the termination log), and stop
//! within the grace period (upstream `kuberuntime_container.go`).

use super::*;

/// The container's CPU shares, quota and memory limit as upstream computes them from its
/// requests and limits, and its OOM score by the pod's QoS class.
pub(super) fn linux_resources(
    pod: &Pod,
    c: &Container,
    memory_capacity: u64,
) -> api::LinuxContainerResources {
    use kubelet_core::cm::{CFS_PERIOD_US, milli_cpu_to_quota, milli_cpu_to_shares};
    let res = c.resources.as_ref();
    let get = |limits: bool, k: &str| {
        let m = if limits {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        m.and_then(|m| m.get(k))
            .and_then(|q| parse_milli(&q.0).ok())
    };
    let lim_cpu = get(true, "cpu");
    // A request defaults to the limit (API defaulting, which static pods also get).
    let shares = milli_cpu_to_shares(
        get(false, "cpu")
            .filter(|v| *v > 0)
            .or(lim_cpu)
            .unwrap_or(0),
    );
    let quota = milli_cpu_to_quota(lim_cpu.unwrap_or(0));
    api::LinuxContainerResources {
        cpu_shares: shares as i64,
        cpu_period: if quota.is_some() {
            CFS_PERIOD_US as i64
        } else {
            0
        },
        cpu_quota: quota.unwrap_or(0),
        memory_limit_in_bytes: get(true, "memory").map_or(0, kubelet_core::cm::milli_to_units),
        oom_score_adj: kubelet_core::qos::container_oom_score_adj(pod, c, memory_capacity),
        ..Default::default()
    }
}

pub(super) fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_GRACE_SECONDS)
}

/// `/var/log/containers/<pod>_<ns>_<container>-<id>.log`, at most 255 characters.
pub fn legacy_log_name(r: &PodRef, container: &str, id: &str) -> String {
    let base = format!("{}_{}_{}-{}", r.name, r.namespace, container, id);
    let mut base: String = base.chars().take(255 - 4).collect();
    base.push_str(".log");
    base
}

impl RuntimeManager {
    pub(super) fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        image_ref: &str,
        restart_count: u32,
        mounts: Vec<api::Mount>,
        env: &[(String, String)],
    ) -> api::ContainerConfig {
        let envs = env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let (command, args) = kubelet_core::envvars::expand_command(c, env);
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: c.name.clone(),
                attempt: restart_count,
            }),
            image: Some(api::ImageSpec {
                image: image_ref.into(),
                annotations: Default::default(),
            }),
            command,
            args,
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs,
            mounts,
            labels: labels::container_labels(pod, c),
            annotations: labels::container_annotations(pod, c, container_hash(c), restart_count),
            log_path: format!("{}/{}.log", c.name, restart_count),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(linux_resources(pod, c, self.cfg.memory_capacity)),
                security_context: Some(security_context::container(
                    kubelet_core::security_context::container_security(pod, c),
                    ns_options(pod),
                )),
            }),
            ..Default::default()
        }
    }

    /// An empty, world-writable file for the container's termination message, bind-mounted at
    /// `terminationMessagePath`: `<root>/pods/<uid>/containers/<name>/<random>`.
    pub(super) async fn termination_log_mount(
        &self,
        r: &PodRef,
        c: &Container,
    ) -> Option<api::Mount> {
        let path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        if path.is_empty() {
            return None;
        }
        let dir = self
            .cfg
            .root_dir
            .join("pods")
            .join(&r.uid)
            .join("containers")
            .join(&c.name);
        let seed = format!("{}{}", self.clock.now_unix_ns(), c.name);
        let file = dir.join(format!(
            "{:08x}",
            kubelet_core::hash::fnv1a(seed.as_bytes()) as u32
        ));
        let made = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&file, b"").await?;
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).await
        };
        if let Err(e) = made.await {
            warn!(file = %file.display(), error = %e, "creating termination message file failed");
            return None;
        }
        Some(api::Mount {
            container_path: path,
            host_path: file.to_string_lossy().into_owned(),
            ..Default::default()
        })
    }

    /// The termination message of an exited container, as upstream reads it.
    pub(super) async fn termination_message(&self, st: &api::ContainerStatus) -> String {
        let ann = &st.annotations;
        let path = ann
            .get(labels::TERMINATION_MESSAGE_PATH)
            .cloned()
            .unwrap_or_default();
        let policy = ann
            .get(labels::TERMINATION_MESSAGE_POLICY)
            .map(String::as_str)
            .unwrap_or("File");
        let mut msg = String::new();
        if let Some(m) = st
            .mounts
            .iter()
            .find(|m| !path.is_empty() && m.container_path == path)
            && let Ok(f) = tokio::fs::File::open(&m.host_path).await
        {
            let mut buf = Vec::new();
            let _ = f.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut buf).await;
            msg = String::from_utf8_lossy(&buf).into_owned();
        }
        if msg.is_empty()
            && policy == "FallbackToLogsOnError"
            && st.exit_code != 0
            && !st.log_path.is_empty()
        {
            msg = match kubelet_cri::logs::read_last(
                std::path::Path::new(&st.log_path),
                FALLBACK_LOG_LINES,
                FALLBACK_LOG_BYTES,
            )
            .await
            {
                Ok(tail) => String::from_utf8_lossy(&tail).into_owned(),
                Err(e) => format!("Error on reading termination message from logs: {e}"),
            };
        }
        msg
    }

    /// runAsNonRoot, checked against the image's user (asked of the runtime only when needed).
    pub(super) async fn verify_non_root(
        &self,
        pod: &Pod,
        c: &Container,
        image_ref: &str,
    ) -> Result<(), ContainerConfigError> {
        if kubelet_core::security_context::effective(pod, c).run_as_non_root != Some(true) {
            return Ok(());
        }
        let img = self.rt.image_status(image_ref).await?;
        let uid = img.as_ref().and_then(|i| i.uid.as_ref()).map(|u| u.value);
        let username = img.map(|i| i.username).unwrap_or_default();
        Ok(kubelet_core::security_context::verify_run_as_non_root(
            pod, c, uid, &username,
        )?)
    }

    /// The container's environment, with what it refers to fetched from the API server.
    pub(super) async fn container_env(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ip: Option<String>,
    ) -> Result<kubelet_core::envvars::Env, ContainerConfigError> {
        use kubelet_core::envvars::{EnvSources, container_env, referenced};
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let (cms, secs) = referenced(c);
        let mut src = EnvSources {
            master_namespace: "default".into(),
            allocatable: self.cfg.allocatable.clone(),
            host_ip: self.cfg.host_ip.clone().unwrap_or_default(),
            pod_ips: pod_ip.into_iter().collect(),
            ..Default::default()
        };
        match &self.secrets {
            Some(o) => {
                // Upstream does not wait for the Services for static pods: the API server
                // may be one of them.
                src.services = o
                    .services(!kubelet_core::config::is_static_pod(pod))
                    .await?;
                for name in cms {
                    let cm = o.get_config_map(&ns, &name).await?;
                    src.config_maps.insert(name, cm);
                }
                for name in secs {
                    let s = o.get_secret(&ns, &name).await?;
                    src.secrets.insert(name, s);
                }
            }
            None => {
                if let Some(name) = cms.first() {
                    return Err(ContainerConfigError::Standalone {
                        kind: "configMap",
                        namespace: ns,
                        name: name.clone(),
                    });
                }
                if let Some(name) = secs.first() {
                    return Err(ContainerConfigError::Standalone {
                        kind: "secret",
                        namespace: ns,
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(container_env(pod, c, &src)?)
    }

    /// Starts one container; whether anything changed in the runtime. A step that fails
    /// comes back as `StepFailed`, reported once by the caller (`step_failed`).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        status: &PodStatus,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        ws: &mut WorkerState,
        res: &mut SyncResult,
    ) -> Result<bool, StepFailed> {
        let r = PodRef::of(pod);
        let fail = |res: &mut SyncResult, reason: &str, message: String| {
            res.failures.insert(
                c.name.clone(),
                StartFailure {
                    reason: reason.into(),
                    message,
                },
            );
        };
        let prev = status.find(&c.name);
        // CrashLoopBackOff: the last run of this container ended too recently.
        if let Some(prev) = prev.filter(|p| p.state == ContainerState::Exited) {
            let key = crash_loop_key(&r, &c.name, container_hash(c));
            let now = Instant::now();
            let finished = instant_of(prev.finished_at, now, self.clock.now_unix_ns());
            if let Some((delay, left)) = ws.crash_backoff.restart_gate(&key, finished, now) {
                self.emit(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "BackOff",
                    "Back-off restarting failed container".into(),
                );
                fail(
                    res,
                    "CrashLoopBackOff",
                    crash_loop_message(delay, &c.name, &r),
                );
                res.retry(left);
                return Ok(false);
            }
        }

        let image = c.image.clone().unwrap_or_default();
        let image_ref = match self
            .ensure_image(pod, c, &image, sandbox_config, ws, res)
            .await
        {
            Some(i) => i,
            None => return Ok(false),
        };
        let restart_count = prev.map_or(0, |p| p.restart_count + 1);
        let pod_ip = match self.rt.pod_sandbox_status(sandbox_id).await {
            Ok(s) => s.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
            Err(_) => None,
        }
        .or_else(|| {
            self.cfg.host_ip.clone().filter(|_| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false)
            })
        });
        // Read once: /etc/hosts, the env and the postStart hook all use it.
        let known_pod_ip = pod_ip.clone();
        let env = self
            .container_env(pod, c, pod_ip)
            .await
            .map_err(StepFailed::config)?;
        for w in &env.warnings {
            self.emit(
                pod,
                None,
                WARNING,
                "InvalidEnvironmentVariableNames",
                w.clone(),
            );
        }
        self.verify_non_root(pod, c, &image_ref)
            .await
            .map_err(StepFailed::config)?;
        let mut mounts: Vec<api::Mount> = self
            .termination_log_mount(&r, c)
            .await
            .into_iter()
            .collect();
        match self.volumes.container_mounts(pod, c, &env.vars) {
            Ok(m) => mounts.extend(m),
            Err(e) => return Err(StepFailed::config(e)),
        }
        if kubelet_core::hosts::mounts_hosts_file(c)
            && let Some(m) = self.hosts_mount(pod, known_pod_ip.as_deref()).await
        {
            mounts.push(m);
        }
        let config = self.container_config(pod, c, &image_ref, restart_count, mounts, &env.vars);
        let log_dir = pod_log_dir(&self.cfg.pod_logs_root, &r).join(&c.name);
        if let Err(e) = tokio::fs::create_dir_all(&log_dir).await {
            warn!(dir = %log_dir.display(), error = %e, "creating container log directory failed");
        }
        let id = self
            .rt
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
            .map_err(|e| StepFailed::runtime("CreateContainerError", &e, false))?;
        self.emit(
            pod,
            Some(&c.name),
            NORMAL,
            "Created",
            format!("Created container {}", c.name),
        );
        if let Err(e) = self.rt.start_container(&id).await {
            return Err(StepFailed::runtime("RunContainerError", &e, true));
        }
        self.emit(
            pod,
            Some(&c.name),
            NORMAL,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let run = crate::lifecycle::run(
                self.rt.as_ref(),
                pod,
                c,
                &id,
                known_pod_ip.as_deref(),
                hook,
                POST_START_TIMEOUT,
            );
            if let Err(e) = run.await {
                self.emit(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "FailedPostStartHook",
                    e.to_string(),
                );
                let started = ContainerStatus {
                    id: id.clone(),
                    name: c.name.clone(),
                    restart_count,
                    state: ContainerState::Running,
                    runtime: self.runtime_name.clone(),
                    sandbox_id: sandbox_id.to_string(),
                    ..Default::default()
                };
                self.kill_container(Some(pod), &started, Some("FailedPostStartHook"), None)
                    .await;
                fail(res, &format!("PostStartHookError: {e}"), e.to_string());
                res.retry(Duration::from_secs(1));
                return Ok(true);
            }
        }
        let target = log_dir.join(format!("{restart_count}.log"));
        let link = self
            .cfg
            .container_logs_root
            .join(legacy_log_name(&r, &c.name, &id));
        if tokio::fs::create_dir_all(&self.cfg.container_logs_root)
            .await
            .is_ok()
        {
            let _ = tokio::fs::remove_file(&link).await;
            let _ = tokio::fs::symlink(&target, &link).await;
        }
        Ok(true)
    }

    /// Stops one container: SIGTERM, then SIGKILL after the grace period (at least 2 s).
    /// `probe_grace` is a failed probe's own grace period, which a deletion's overrides.
    pub async fn kill_container(
        &self,
        pod: Option<&Pod>,
        c: &ContainerStatus,
        message: Option<&str>,
        probe_grace: Option<i64>,
    ) {
        let deleting = pod.is_some_and(|p| p.metadata.deletion_grace_period_seconds.is_some());
        let mut grace = probe_grace
            .filter(|_| !deleting)
            .or(pod.map(grace_seconds))
            .or(c.grace_period)
            .unwrap_or(MIN_GRACE_SECONDS);
        if let Some(p) = pod {
            let msg = message
                .map(str::to_string)
                .unwrap_or_else(|| format!("Stopping container {}", c.name));
            self.emit(p, Some(&c.name), NORMAL, "Killing", msg);
            let spec = p.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|x| x.name == c.name)
            });
            let hook = spec
                .and_then(|s| s.lifecycle.as_ref())
                .and_then(|l| l.pre_stop.as_ref());
            if let (Some(spec), Some(hook)) = (spec, hook)
                && grace > 0
                && c.state == ContainerState::Running
            {
                let t0 = Instant::now();
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                let limit = Duration::from_secs(grace as u64);
                let run = crate::lifecycle::run(
                    self.rt.as_ref(),
                    p,
                    spec,
                    &c.id,
                    ip.as_deref(),
                    hook,
                    limit,
                );
                match tokio::time::timeout(limit, run).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.emit(
                        p,
                        Some(&c.name),
                        WARNING,
                        "FailedPreStopHook",
                        e.to_string(),
                    ),
                    Err(_) => self.emit(
                        p,
                        Some(&c.name),
                        WARNING,
                        "FailedPreStopHook",
                        format!("PreStopHook failed to complete within {grace}s"),
                    ),
                }
                grace -= t0.elapsed().as_secs() as i64;
            }
        }
        let grace = grace.max(MIN_GRACE_SECONDS);
        if let Err(e) = self
            .rt
            .stop_container(&c.id, Duration::from_secs(grace as u64))
            .await
            && !e.is_not_found()
        {
            warn!(container = %c.name, id = %c.id, error = %e, "stopping container failed");
        }
    }
}
