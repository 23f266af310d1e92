//! Removal of dead containers and sandboxes that newer ones replaced (upstream
//! `kuberuntime_gc.go`, per pod).

use super::*;

impl RuntimeManager {
    /// Removes the exited containers container GC would: beyond the newest
    /// `maxPerPodContainer` per name (the newest gives `lastState` and the termination
    /// message) and older than `minAge`; older runs only cost disk. Restart counts live on
    /// the containers' labels.
    pub(super) async fn prune_dead_containers(&self, r: &PodRef, status: &PodStatus) {
        let policy = self.cfg.gc_policy;
        let Ok(keep) = usize::try_from(policy.max_per_pod_container) else {
            return; // no limit
        };
        let now = self.clock.now_unix_ns();
        let min_age = i64::try_from(policy.min_age.as_nanos()).unwrap_or(i64::MAX);
        let mut kept: HashMap<&str, usize> = HashMap::new();
        for c in status
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Exited)
        {
            let n = kept.entry(c.name.as_str()).or_default();
            if *n < keep {
                *n += 1;
                continue;
            }
            if c.created_at > 0 && now.saturating_sub(c.created_at) < min_age {
                continue;
            }
            match self.rt.remove_container(&c.id).await {
                Err(e) if !e.is_not_found() => {
                    warn!(container = %c.name, id = %c.id, error = %e, "removing dead container failed");
                    continue;
                }
                _ => {}
            }
            self.exited
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&c.id);
            let link = self
                .cfg
                .container_logs_root
                .join(legacy_log_name(r, &c.name, &c.id));
            let _ = tokio::fs::remove_file(link).await;
            if !c.log_path.is_empty() {
                let _ = tokio::fs::remove_file(&c.log_path).await;
            }
        }
    }

    /// Removes sandboxes that are dead, not the newest, and whose every container has a newer
    /// run elsewhere: nothing of them is needed for status or restart counts any more. This is
    /// also what clears a sandbox left behind by a runtime call that timed out.
    pub(super) async fn prune_dead_sandboxes(&self, status: &PodStatus) {
        let Some(newest) = status.sandboxes.first() else {
            return;
        };
        for sb in status
            .sandboxes
            .iter()
            .skip(1)
            .filter(|s| !s.ready && s.id != newest.id)
        {
            let superseded = status
                .containers
                .iter()
                .filter(|c| c.sandbox_id == sb.id)
                .all(|c| {
                    c.state == ContainerState::Exited
                        && status.containers.iter().any(|n| {
                            n.name == c.name && n.sandbox_id != sb.id && n.created_at > c.created_at
                        })
                });
            if !superseded {
                continue;
            }
            for res in [
                self.rt.stop_pod_sandbox(&sb.id).await,
                self.rt.remove_pod_sandbox(&sb.id).await,
            ] {
                if let Err(e) = res
                    && !e.is_not_found()
                {
                    warn!(sandbox = %sb.id, error = %e, "removing dead sandbox failed");
                }
            }
        }
    }
}

impl RuntimeManager {
    /// Node-wide container and sandbox garbage collection (upstream `containerGC`), with the
    /// decisions of `kubelet_core::gc`: dead containers beyond the policy, all of a deleted
    /// pod's (and a terminated pod's when `evict_terminated`, as the eviction manager asks),
    /// and inactive sandboxes no longer needed. Only containers the kubelet labelled count.
    pub async fn garbage_collect(
        &self,
        policy: kubelet_core::gc::GcPolicy,
        all_sources_ready: bool,
        evict_terminated: bool,
        state: &(dyn Fn(&str) -> kubelet_core::gc::PodState + Send + Sync),
    ) -> Result<usize, kubelet_cri::CriError> {
        use kubelet_core::gc::{
            DeadContainer, GcSandbox, containers_to_remove, sandboxes_to_remove,
        };
        use kubelet_core::labels::{CONTAINER_NAME, POD_UID};
        // Standalone (`Foreign` for unknown pods), the pods whose sandboxes carry this
        // kubelet's root dir are still its own to collect.
        let own_root = self.cfg.root_dir.to_string_lossy().into_owned();
        // One listing of each, before anything is removed.
        let all_sandboxes = self.rt.list_pod_sandbox(None).await?;
        let containers = self.rt.list_containers(None).await?;
        let ours: std::collections::HashSet<String> = all_sandboxes
            .iter()
            .filter(|s| s.labels.get(kubelet_core::labels::KUBELET_ROOT_DIR) == Some(&own_root))
            .filter_map(|s| s.metadata.as_ref().map(|m| m.uid.clone()))
            .collect();
        let state = &|uid: &str| match state(uid) {
            kubelet_core::gc::PodState::Foreign if ours.contains(uid) => {
                kubelet_core::gc::PodState::Deleted
            }
            other => other,
        };
        let running = kubelet_cri::api::ContainerState::ContainerRunning as i32;
        let dead: Vec<DeadContainer> = containers
            .iter()
            .filter(|c| c.state != running)
            .filter_map(|c| {
                Some(DeadContainer {
                    id: c.id.clone(),
                    pod_uid: c.labels.get(POD_UID)?.clone(),
                    name: c.labels.get(CONTAINER_NAME)?.clone(),
                    created: c.created_at,
                })
            })
            .collect();
        let now = self.clock.now_unix_ns();
        let mut removed = 0;
        let mut removed_ids = std::collections::HashSet::new();
        let gone = containers_to_remove(
            &dead,
            policy,
            now,
            all_sources_ready,
            evict_terminated,
            state,
        );
        for id in &gone {
            match self.rt.remove_container(id).await {
                Err(e) if !e.is_not_found() => {
                    warn!(container = %id, error = %e, "container GC: removing a dead container failed");
                }
                _ => {
                    removed += 1;
                    removed_ids.insert(id.clone());
                    self.exited
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(id);
                }
            }
        }
        // Sandboxes, judged after the containers went: one still holding any is active.
        let holders: std::collections::HashSet<&str> = containers
            .iter()
            .filter(|c| !removed_ids.contains(&c.id))
            .map(|c| c.pod_sandbox_id.as_str())
            .collect();
        let ready = kubelet_cri::api::PodSandboxState::SandboxReady as i32;
        let sandboxes: Vec<GcSandbox> = all_sandboxes
            .into_iter()
            .filter_map(|s| {
                let uid = s.metadata.as_ref()?.uid.clone();
                Some(GcSandbox {
                    active: s.state == ready || holders.contains(s.id.as_str()),
                    id: s.id,
                    pod_uid: uid,
                    created: s.created_at,
                })
            })
            .collect();
        for id in sandboxes_to_remove(&sandboxes, evict_terminated, state) {
            match self.rt.remove_pod_sandbox(&id).await {
                Err(e) if !e.is_not_found() => {
                    warn!(sandbox = %id, error = %e, "container GC: removing a dead sandbox failed");
                }
                _ => removed += 1,
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod node_gc_tests {
    use super::*;
    use crate::kuberuntime::tests::{Scratch, manager, tmp};
    use kubelet_core::gc::{GcPolicy, PodState};
    use kubelet_cri::api;
    use kubelet_cri::fake::FakeRuntime;

    /// A sandbox of pod `uid` with `n` exited containers named `c`, oldest first.
    async fn pod_with_dead(rt: &FakeRuntime, uid: &str, n: usize) -> (String, Vec<String>) {
        let sb_cfg = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: uid.into(),
                uid: uid.into(),
                namespace: "ns".into(),
                attempt: 0,
            }),
            ..Default::default()
        };
        let sb = rt
            .run_pod_sandbox(sb_cfg.clone(), String::new())
            .await
            .unwrap();
        let mut ids = vec![];
        for _ in 0..n {
            let cfg = api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                labels: [
                    (kubelet_core::labels::POD_UID.to_string(), uid.to_string()),
                    (
                        kubelet_core::labels::CONTAINER_NAME.to_string(),
                        "c".to_string(),
                    ),
                ]
                .into(),
                image: Some(api::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            ids.push(rt.create_container(&sb, cfg, sb_cfg.clone()).await.unwrap());
        }
        (sb, ids)
    }

    #[tokio::test]
    async fn dead_containers_beyond_the_newest_and_a_deleted_pods_all_go() {
        let dir = Scratch(tmp());
        let rt = Arc::new(FakeRuntime::with_images(&["busybox"]));
        let m = manager(rt.clone(), &dir);
        let (_, live) = pod_with_dead(&rt, "live", 3).await;
        let (gone_sb, gone) = pod_with_dead(&rt, "gone", 1).await;
        rt.stop_pod_sandbox(&gone_sb).await.unwrap();
        let state = |uid: &str| {
            if uid == "gone" {
                PodState::Deleted
            } else {
                PodState::Live
            }
        };
        m.garbage_collect(GcPolicy::default(), true, false, &state)
            .await
            .unwrap();
        let left: Vec<String> = rt
            .list_containers(None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(
            left,
            [live[2].clone()],
            "the newest of `live` only; {gone:?} went"
        );
        let sandboxes: Vec<String> = rt
            .list_pod_sandbox(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert!(
            !sandboxes.contains(&gone_sb),
            "the deleted pod's stopped sandbox went"
        );
        assert_eq!(sandboxes.len(), 1);
    }
}
