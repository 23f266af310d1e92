//! What to do to bring a pod's runtime state to its spec: upstream's `computePodActions`.

use crate::hash::container_hash;
use crate::runtime::{ContainerState, ContainerStatus, PodStatus};
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillInfo {
    pub name: String,
    pub message: String,
    /// The failed probe's own `terminationGracePeriodSeconds`, which replaces the pod's
    /// (but not a deletion's) grace period for this kill.
    pub grace_period: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox (also when the sandbox is to be recreated).
    pub kill_pod: bool,
    pub create_sandbox: bool,
    /// The sandbox to use when not creating one (or the old one when recreating).
    pub sandbox_id: Option<String>,
    /// The attempt number for a new sandbox.
    pub attempt: u32,
    /// Index into `spec.initContainers` of the next init container to start.
    pub next_init_container: Option<usize>,
    /// Indices into `spec.initContainers` of sidecars (`restartPolicy: Always`) to restart
    /// after initialization.
    pub sidecars_to_start: Vec<usize>,
    /// Indices into `spec.containers`.
    pub containers_to_start: Vec<usize>,
    /// Container id -> why it is killed.
    pub containers_to_kill: BTreeMap<String, KillInfo>,
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn should_restart_on_failure(pod: &Pod) -> bool {
    restart_policy(pod) != "Never"
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
}

/// A sidecar: an init container with `restartPolicy: Always`, kept running beside the
/// regular containers (upstream 1.28+; the 1.20 API server drops the field, so it only
/// arrives from newer servers or static pods).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn succeeded(status: Option<&ContainerStatus>) -> bool {
    status.is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == 0)
}

/// Upstream `ShouldContainerBeRestarted`.
pub fn should_container_be_restarted(pod: &Pod, c: &Container, status: &PodStatus) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(s) = status.find(&c.name) else {
        return true;
    };
    match s.state {
        ContainerState::Running => false,
        ContainerState::Unknown | ContainerState::Created => true,
        ContainerState::Exited => match restart_policy(pod) {
            "Never" => false,
            "OnFailure" => s.exit_code != 0,
            _ => true,
        },
    }
}

/// Whether the pod needs a new sandbox, the attempt number to use, and the current sandbox.
fn sandbox_changed(pod: &Pod, status: &PodStatus) -> (bool, u32, Option<String>) {
    let Some(newest) = status.sandboxes.first() else {
        return (true, 0, None);
    };
    let ready = status.sandboxes.iter().filter(|s| s.ready).count();
    let next = newest.attempt + 1;
    let id = Some(newest.id.clone());
    if ready > 1 || !newest.ready || newest.host_network != host_network(pod) {
        return (true, next, id);
    }
    if !host_network(pod) && newest.ip.is_empty() {
        return (true, next, id);
    }
    (false, newest.attempt, id)
}

/// The last init container that ran, the next one to run, and whether all are done
/// (upstream `findNextInitContainerToRun`, extended for sidecars: a sidecar counts as done
/// at its position once it runs, and is restarted when it does not).
fn next_init_container(
    pod: &Pod,
    status: &PodStatus,
) -> (Option<ContainerStatus>, Option<usize>, bool) {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return (None, None, true);
    }
    // Any regular container ever started means initialization is done.
    if containers(pod)
        .iter()
        .any(|c| status.find(&c.name).is_some())
    {
        return (None, None, true);
    }
    let failed = |s: &ContainerStatus| {
        s.state == ContainerState::Unknown || s.state == ContainerState::Exited && s.exit_code != 0
    };
    // The last failed one, if any, is retried (or fails the pod).
    for (i, c) in inits.iter().enumerate().rev() {
        if let Some(s) = status.find(&c.name).filter(|s| !is_sidecar(c) && failed(s)) {
            return (Some(s.clone()), Some(i), false);
        }
    }
    for (i, c) in inits.iter().enumerate().rev() {
        let Some(s) = status.find(&c.name) else {
            continue;
        };
        if is_sidecar(c) {
            if s.state != ContainerState::Running {
                return (Some(s.clone()), Some(i), false);
            }
        } else if s.state != ContainerState::Exited {
            // Still running (or created): wait for it.
            return (Some(s.clone()), None, false);
        }
        if i + 1 == inits.len() {
            return (None, None, true);
        }
        return (None, Some(i + 1), false);
    }
    (None, Some(0), false)
}

/// A probe verdict that makes the kubelet kill a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    Liveness,
    Startup,
}

pub fn compute_pod_actions(pod: &Pod, status: &PodStatus) -> PodActions {
    compute_pod_actions_with_probes(pod, status, &|_| None)
}

/// `probe_failed` answers, for a running container, whether its liveness or startup probe
/// has failed (upstream asks the liveness and startup managers).
pub fn compute_pod_actions_with_probes(
    pod: &Pod,
    status: &PodStatus,
    probe_failed: &dyn Fn(&ContainerStatus) -> Option<ProbeFailure>,
) -> PodActions {
    let (create, attempt, sandbox_id) = sandbox_changed(pod, status);
    let mut a = PodActions {
        kill_pod: create,
        create_sandbox: create,
        sandbox_id,
        attempt,
        ..Default::default()
    };
    if create {
        // A pod that must not restart and already ran containers keeps its dead sandbox.
        if !should_restart_on_failure(pod) && attempt != 0 && !status.containers.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        if !init_containers(pod).is_empty() {
            a.next_init_container = Some(0);
            return a;
        }
        for (i, c) in containers(pod).iter().enumerate() {
            if restart_policy(pod) == "OnFailure" && succeeded(status.find(&c.name)) {
                continue;
            }
            a.containers_to_start.push(i);
        }
        // Everything already succeeded: no new sandbox for nothing to run.
        if a.containers_to_start.is_empty() {
            a.create_sandbox = false;
        }
        return a;
    }

    let (last, next, done) = next_init_container(pod, status);
    if !done {
        if let Some(next) = next {
            let sidecar = init_containers(pod).get(next).is_some_and(is_sidecar);
            let failed = !sidecar
                && last
                    .as_ref()
                    .is_some_and(|s| s.state == ContainerState::Exited && s.exit_code != 0);
            if failed && !should_restart_on_failure(pod) {
                a.kill_pod = true;
            } else {
                if let Some(s) = last.filter(|s| s.state == ContainerState::Unknown) {
                    a.containers_to_kill.insert(
                        s.id.clone(),
                        KillInfo {
                            name: s.name.clone(),
                            message:
                                "Init container is in unknown state, try killing it before restart"
                                    .into(),
                            grace_period: None,
                        },
                    );
                }
                a.next_init_container = Some(next);
            }
        }
        return a;
    }

    for (i, c) in init_containers(pod).iter().enumerate() {
        if is_sidecar(c)
            && status
                .find(&c.name)
                .is_none_or(|s| s.state != ContainerState::Running)
        {
            a.sidecars_to_start.push(i);
        }
    }
    let mut keep = 0;
    for (i, c) in containers(pod).iter().enumerate() {
        let s = status.find(&c.name);
        let Some(s) = s.filter(|s| s.state == ContainerState::Running) else {
            if should_container_be_restarted(pod, c, status) {
                a.containers_to_start.push(i);
                if let Some(s) = s.filter(|s| s.state == ContainerState::Unknown) {
                    a.containers_to_kill.insert(
                        s.id.clone(),
                        KillInfo {
                            name: c.name.clone(),
                            message: "Container is in unknown state, try killing it before restart"
                                .into(),
                            grace_period: None,
                        },
                    );
                }
            }
            continue;
        };
        if s.hash.is_some_and(|h| h != container_hash(c)) {
            a.containers_to_start.push(i);
            a.containers_to_kill.insert(
                s.id.clone(),
                KillInfo {
                    name: c.name.clone(),
                    message: format!("Container {} definition changed, will be restarted", c.name),
                    grace_period: None,
                },
            );
            continue;
        }
        if let Some(f) = probe_failed(s) {
            let (what, probe) = match f {
                ProbeFailure::Liveness => ("liveness", c.liveness_probe.as_ref()),
                ProbeFailure::Startup => ("startup", c.startup_probe.as_ref()),
            };
            let mut message = format!("Container {} failed {what} probe", c.name);
            if should_restart_on_failure(pod) {
                message.push_str(", will be restarted");
                a.containers_to_start.push(i);
            }
            a.containers_to_kill.insert(
                s.id.clone(),
                KillInfo {
                    name: c.name.clone(),
                    message,
                    grace_period: probe.and_then(|p| p.termination_grace_period_seconds),
                },
            );
            continue;
        }
        keep += 1;
    }
    if keep == 0 && a.containers_to_start.is_empty() {
        // Every regular container is done: the sidecars go with them.
        a.kill_pod = true;
        a.sidecars_to_start.clear();
    }
    a
}

/// Containers and sandboxes to stop when the pod is being deleted or has finished.
pub fn running_container_ids(status: &PodStatus) -> Vec<&ContainerStatus> {
    status
        .containers
        .iter()
        .filter(|c| {
            matches!(
                c.state,
                ContainerState::Running | ContainerState::Created | ContainerState::Unknown
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SandboxStatus;
    use k8s_openapi::api::core::v1::PodSpec;
    use proptest::prelude::*;

    fn pod(names: &[&str], inits: &[&str], policy: &str) -> Pod {
        let mk = |n: &&str| Container {
            name: n.to_string(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                containers: names.iter().map(mk).collect(),
                init_containers: (!inits.is_empty()).then(|| inits.iter().map(mk).collect()),
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sandbox(ready: bool, attempt: u32) -> SandboxStatus {
        SandboxStatus {
            id: format!("sb{attempt}"),
            attempt,
            ready,
            created_at: attempt as i64,
            ip: "10.88.0.2".into(),
            additional_ips: vec![],
            host_network: false,
        }
    }

    fn ctr(
        pod: &Pod,
        name: &str,
        state: ContainerState,
        exit: i32,
        created: i64,
    ) -> ContainerStatus {
        let spec = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .chain(pod.spec.as_ref().unwrap().init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap();
        ContainerStatus {
            id: format!("{name}-{created}"),
            name: name.into(),
            restart_count: 0,
            hash: Some(container_hash(spec)),
            state,
            created_at: created,
            started_at: created,
            finished_at: created,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            runtime: "containerd".into(),
            grace_period: None,
            log_path: String::new(),
            sandbox_id: String::new(),
        }
    }

    #[test]
    fn fresh_pod_creates_sandbox_and_all_containers() {
        let p = pod(&["a", "b"], &[], "Always");
        let a = compute_pod_actions(&p, &PodStatus::default());
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!(a.attempt, 0);
        assert_eq!(a.containers_to_start, vec![0, 1]);
    }

    #[test]
    fn fresh_pod_with_init_starts_first_init_only() {
        let p = pod(&["a"], &["i1", "i2"], "Always");
        let a = compute_pod_actions(&p, &PodStatus::default());
        assert_eq!(a.next_init_container, Some(0));
        assert!(a.containers_to_start.is_empty());
    }

    #[test]
    fn init_sequence_advances() {
        let p = pod(&["a"], &["i1", "i2"], "Always");
        let mut st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            ..Default::default()
        };
        st.containers = vec![ctr(&p, "i1", ContainerState::Exited, 0, 1)];
        assert_eq!(compute_pod_actions(&p, &st).next_init_container, Some(1));
        st.containers
            .insert(0, ctr(&p, "i2", ContainerState::Exited, 0, 2));
        assert_eq!(compute_pod_actions(&p, &st).containers_to_start, vec![0]);
        // a failed init is retried under Always, fails the pod under Never
        st.containers[0].exit_code = 1;
        assert_eq!(compute_pod_actions(&p, &st).next_init_container, Some(1));
        let never = pod(&["a"], &["i1", "i2"], "Never");
        st.containers = vec![ctr(&never, "i2", ContainerState::Exited, 1, 2)];
        assert!(compute_pod_actions(&never, &st).kill_pod);
    }

    #[test]
    fn running_pod_is_kept() {
        let p = pod(&["a"], &[], "Always");
        let st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![ctr(&p, "a", ContainerState::Running, 0, 1)],
        };
        assert_eq!(
            compute_pod_actions(&p, &st),
            PodActions {
                sandbox_id: Some("sb0".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn restart_policies() {
        for (policy, exit, restart) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 1, false),
        ] {
            let p = pod(&["a"], &[], policy);
            let st = PodStatus {
                sandboxes: vec![sandbox(true, 0)],
                containers: vec![ctr(&p, "a", ContainerState::Exited, exit, 1)],
            };
            let a = compute_pod_actions(&p, &st);
            assert_eq!(
                a.containers_to_start == vec![0],
                restart,
                "{policy} exit {exit}"
            );
            assert_eq!(
                a.kill_pod, !restart,
                "{policy} exit {exit}: a finished pod is killed"
            );
        }
    }

    #[test]
    fn liveness_failure_restarts_unless_never() {
        for (policy, restart) in [("Always", true), ("OnFailure", true), ("Never", false)] {
            let p = pod(&["a", "b"], &[], policy);
            let st = PodStatus {
                sandboxes: vec![sandbox(true, 0)],
                containers: vec![
                    ctr(&p, "a", ContainerState::Running, 0, 1),
                    ctr(&p, "b", ContainerState::Running, 0, 2),
                ],
            };
            let a = compute_pod_actions_with_probes(&p, &st, &|c| {
                (c.name == "b").then_some(ProbeFailure::Liveness)
            });
            let kill = &a.containers_to_kill["b-2"];
            let want = if restart {
                "Container b failed liveness probe, will be restarted"
            } else {
                "Container b failed liveness probe"
            };
            assert_eq!(kill.message, want);
            assert_eq!(kill.grace_period, None);
            assert_eq!(a.containers_to_start == vec![1], restart);
            assert!(!a.kill_pod, "a still runs");
        }
    }

    #[test]
    fn probe_grace_period_applies_to_its_own_failure() {
        let mut p = pod(&["a"], &[], "Always");
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        c.startup_probe = Some(k8s_openapi::api::core::v1::Probe {
            termination_grace_period_seconds: Some(7),
            ..Default::default()
        });
        c.liveness_probe = Some(Default::default());
        let st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![ctr(&p, "a", ContainerState::Running, 0, 1)],
        };
        let kill = |f| {
            compute_pod_actions_with_probes(&p, &st, &|_| Some(f)).containers_to_kill["a-1"]
                .grace_period
        };
        assert_eq!(kill(ProbeFailure::Startup), Some(7));
        assert_eq!(
            kill(ProbeFailure::Liveness),
            None,
            "the liveness probe sets none"
        );
    }

    #[test]
    fn changed_spec_restarts_only_that_container() {
        let p = pod(&["a", "b"], &[], "Always");
        let mut st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![
                ctr(&p, "a", ContainerState::Running, 0, 1),
                ctr(&p, "b", ContainerState::Running, 0, 2),
            ],
        };
        st.containers[1].hash = Some(1);
        let a = compute_pod_actions(&p, &st);
        assert_eq!(a.containers_to_start, vec![1]);
        assert_eq!(a.containers_to_kill.len(), 1);
        assert!(a.containers_to_kill.contains_key("b-2"));
        assert!(!a.kill_pod);
    }

    #[test]
    fn dead_sandbox_is_recreated_with_next_attempt() {
        let p = pod(&["a"], &[], "Always");
        let st = PodStatus {
            sandboxes: vec![sandbox(false, 3)],
            containers: vec![ctr(&p, "a", ContainerState::Exited, 137, 1)],
        };
        let a = compute_pod_actions(&p, &st);
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!(a.attempt, 4);
        // with restartPolicy Never, it stays dead
        let n = pod(&["a"], &[], "Never");
        let a = compute_pod_actions(&n, &st);
        assert!(a.kill_pod && !a.create_sandbox);
    }

    fn with_sidecar(p: &mut Pod, name: &str) {
        for c in p
            .spec
            .as_mut()
            .unwrap()
            .init_containers
            .iter_mut()
            .flatten()
        {
            if c.name == name {
                c.restart_policy = Some("Always".into());
            }
        }
    }

    #[test]
    fn sidecars_start_in_order_and_stay() {
        let mut p = pod(&["app"], &["side", "setup"], "Never");
        with_sidecar(&mut p, "side");
        let mut st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            ..Default::default()
        };
        assert_eq!(compute_pod_actions(&p, &st).next_init_container, Some(0));
        // the sidecar runs: the next init container may start, while the sidecar keeps running
        st.containers = vec![ctr(&p, "side", ContainerState::Running, 0, 1)];
        assert_eq!(compute_pod_actions(&p, &st).next_init_container, Some(1));
        st.containers
            .insert(0, ctr(&p, "setup", ContainerState::Exited, 0, 2));
        let a = compute_pod_actions(&p, &st);
        assert_eq!(a.containers_to_start, vec![0]);
        assert!(a.sidecars_to_start.is_empty() && !a.kill_pod);
        // a sidecar that dies is restarted even under restartPolicy Never
        st.containers
            .insert(0, ctr(&p, "app", ContainerState::Running, 0, 3));
        st.containers.retain(|c| c.name != "side");
        st.containers
            .push(ctr(&p, "side", ContainerState::Exited, 1, 1));
        st.sort();
        let a = compute_pod_actions(&p, &st);
        assert_eq!(a.sidecars_to_start, vec![0]);
        assert!(!a.kill_pod);
        // once the app is done, the pod is killed, sidecar included, and nothing restarts
        st.containers.retain(|c| c.name != "app");
        st.containers
            .push(ctr(&p, "app", ContainerState::Exited, 0, 4));
        st.sort();
        let a = compute_pod_actions(&p, &st);
        assert!(a.kill_pod && a.sidecars_to_start.is_empty() && a.containers_to_start.is_empty());
    }

    #[test]
    fn failed_sidecar_start_does_not_fail_the_pod() {
        let mut p = pod(&["app"], &["side"], "Never");
        with_sidecar(&mut p, "side");
        let st = PodStatus {
            sandboxes: vec![sandbox(true, 0)],
            containers: vec![ctr(&p, "side", ContainerState::Exited, 1, 1)],
        };
        let a = compute_pod_actions(&p, &st);
        assert!(!a.kill_pod);
        assert_eq!(a.next_init_container, Some(0));
    }

    fn arb_state() -> impl Strategy<Value = ContainerState> {
        prop_oneof![
            Just(ContainerState::Created),
            Just(ContainerState::Running),
            Just(ContainerState::Exited),
            Just(ContainerState::Unknown),
        ]
    }

    proptest! {
        // Any spec/state pair yields a consistent plan.
        #[test]
        fn plans_are_consistent(
            n in 1usize..4,
            ninit in 0usize..3,
            policy in prop_oneof![Just("Always"), Just("OnFailure"), Just("Never")],
            sb in proptest::option::of((any::<bool>(), 0u32..4, any::<bool>())),
            states in proptest::collection::vec((0usize..6, arb_state(), -1i32..3, any::<bool>()), 0..8),
        ) {
            let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let inits: Vec<String> = (0..ninit).map(|i| format!("i{i}")).collect();
            let nr: Vec<&str> = names.iter().map(String::as_str).collect();
            let ir: Vec<&str> = inits.iter().map(String::as_str).collect();
            let p = pod(&nr, &ir, policy);
            let all: Vec<&str> = nr.iter().chain(ir.iter()).copied().collect();
            let mut st = PodStatus::default();
            if let Some((ready, attempt, ip)) = sb {
                let mut s = sandbox(ready, attempt);
                if !ip { s.ip.clear(); }
                st.sandboxes.push(s);
            }
            for (k, (idx, state, exit, changed)) in states.into_iter().enumerate() {
                let name = all[idx % all.len()];
                let mut c = ctr(&p, name, state, exit, k as i64);
                if changed { c.hash = Some(7); }
                st.containers.push(c);
            }
            st.sort();
            let a = compute_pod_actions(&p, &st);
            // Indices are valid and unique.
            let mut seen = std::collections::HashSet::new();
            for i in &a.containers_to_start {
                prop_assert!(*i < n);
                prop_assert!(seen.insert(*i));
            }
            if let Some(i) = a.next_init_container { prop_assert!(i < ninit); }
            // A new sandbox implies killing the old pod; never both an init and regular starts.
            if a.create_sandbox { prop_assert!(a.kill_pod); }
            prop_assert!(a.next_init_container.is_none() || a.containers_to_start.is_empty());
            // Only containers that exist are killed.
            for id in a.containers_to_kill.keys() {
                prop_assert!(st.containers.iter().any(|c| &c.id == id));
            }
            // Without a sandbox, nothing runs in the old one.
            if st.sandboxes.is_empty() { prop_assert!(a.kill_pod); }
            // A kept sandbox means it is ready and the plan reuses it.
            if !a.kill_pod { prop_assert!(a.sandbox_id.is_some()); }
            // Under Never, an exited container is not started again in its sandbox.
            if policy == "Never" && !a.create_sandbox {
                for i in &a.containers_to_start {
                    let exited = st.find(&names[*i]).is_some_and(|s| s.state == ContainerState::Exited);
                    prop_assert!(!exited);
                }
            }
        }
    }
}
