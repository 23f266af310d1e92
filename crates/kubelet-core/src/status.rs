//! The API pod status the kubelet reports (upstream `generateAPIPodStatus`, `getPhase`,
//! `convertToAPIContainerStatuses` and `status.Generate*Condition`).

use crate::actions::init_containers;
use crate::qos::pod_qos;
use crate::runtime::{ContainerState, ContainerStatus as RtContainer, PodStatus as RtPod};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;

pub const CONTAINER_CREATING: &str = "ContainerCreating";
pub const POD_INITIALIZING: &str = "PodInitializing";

/// Why a container could not be started in the last sync (e.g. `CrashLoopBackOff`,
/// `ErrImageNeverPull`); shown as its waiting state, as upstream's reason cache does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
}

#[derive(Debug)]
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RtPod,
    pub failures: &'a HashMap<String, StartFailure>,
    pub host_ip: Option<&'a str>,
    /// Readiness per container name from the prober; absent means "no readiness probe".
    pub readiness: &'a HashMap<String, bool>,
    /// Startup-probe success per container name; absent means "no startup probe".
    pub startup: &'a HashMap<String, bool>,
    /// The kubelet failed the pod (e.g. `DeadlineExceeded`): reason and message.
    pub failure: Option<(&'a str, &'a str)>,
    pub now: Timestamp,
}

/// Upstream's reason and message for `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Pod was active on the node longer than the specified deadline",
);

/// Time left before `activeDeadlineSeconds` runs out, counted from the pod's start time;
/// `Some(ZERO)` once it has. `None` when the pod has no deadline or has not started.
pub fn active_deadline_left(
    pod: &Pod,
    start: Option<&Time>,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = start?.0;
    let end = start.as_second().saturating_add(secs.max(0));
    let left = end.saturating_sub(now.as_second()).max(0);
    Some(std::time::Duration::from_secs(left as u64))
}

/// Truncates to whole seconds: the API's resolution, so generated and stored statuses compare equal.
/// Succeeded and Failed are final: nothing of the pod runs again.
pub fn is_terminal_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

pub fn time_of(ts: Timestamp) -> Time {
    Time(Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

fn time_ns(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(ns)).ok().map(time_of))
        .flatten()
}

fn runtime_state(c: &RtContainer) -> ApiState {
    let id = Some(format!("{}://{}", c.runtime, c.id));
    match c.state {
        ContainerState::Running => ApiState {
            running: Some(ContainerStateRunning {
                started_at: time_ns(c.started_at),
            }),
            ..Default::default()
        },
        // Upstream treats a created-but-never-started container like an exited one.
        ContainerState::Exited | ContainerState::Created => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
                message: (!c.message.is_empty()).then(|| c.message.clone()),
                started_at: time_ns(c.started_at),
                finished_at: time_ns(c.finished_at),
                container_id: id,
                signal: None,
            }),
            ..Default::default()
        },
        ContainerState::Unknown => ApiState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        },
    }
}

fn waiting(reason: &str, message: &str) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

fn container_statuses(
    containers: &[Container],
    input: &StatusInput<'_>,
    default_reason: &str,
    is_init: bool,
) -> Vec<ContainerStatus> {
    containers
        .iter()
        .map(|c| {
            let (latest, previous) = input.runtime.latest_two(&c.name);
            let mut s = ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                state: Some(waiting(default_reason, "")),
                ..Default::default()
            };
            // Not in the runtime (any more): a terminated container keeps the status last
            // reported, as its containers may be garbage collected; otherwise the old restart
            // count and last state carry over (upstream `convertToAPIContainerStatuses`).
            let old = input.pod.status.as_ref().and_then(|st| {
                if is_init {
                    st.init_container_statuses.as_ref()
                } else {
                    st.container_statuses.as_ref()
                }
            });
            let old = old.and_then(|v| v.iter().find(|o| o.name == c.name));
            if latest.is_none()
                && let Some(o) = old
            {
                if o.state.as_ref().is_some_and(|st| st.terminated.is_some()) {
                    s = o.clone();
                } else {
                    s.restart_count = o.restart_count;
                    s.last_state = o.last_state.clone();
                }
            }
            if let Some(rc) = latest {
                s.state = Some(runtime_state(rc));
                s.restart_count = rc.restart_count as i32;
                // The spec's image, not the runtime's first tag for the image ID: what users
                // wrote is what they expect to read back.
                s.image_id = rc.image_ref.clone();
                s.container_id = Some(format!("{}://{}", rc.runtime, rc.id));
                let running = rc.state == ContainerState::Running;
                let sidecar = is_init && crate::actions::is_sidecar(c);
                // Started once running and past its startup probe; ready only once started.
                let started = running && input.startup.get(&c.name).copied().unwrap_or(true);
                s.started = (!is_init || sidecar).then_some(started);
                s.ready = if is_init && !sidecar {
                    rc.state == ContainerState::Exited && rc.exit_code == 0
                } else {
                    started && input.readiness.get(&c.name).copied().unwrap_or(true)
                };
                if let Some(prev) = previous.filter(|p| p.state == ContainerState::Exited) {
                    s.last_state = Some(runtime_state(prev));
                }
            }
            // As upstream: a start failure only shows for a container that is to be (re)started.
            let restartable = is_init
                || crate::actions::should_container_be_restarted(input.pod, c, input.runtime);
            if let Some(f) = input.failures.get(&c.name).filter(|_| restartable) {
                // The container could not be (re)started: show why, keeping its last run.
                if let Some(st) = s.state.take().filter(|st| st.terminated.is_some()) {
                    s.last_state = Some(st);
                }
                s.state = Some(waiting(&f.reason, &f.message));
                s.ready = false;
            }
            s
        })
        .collect()
}

/// Upstream `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerStatus], regular: &[ContainerStatus]) -> &'static str {
    let spec = pod.spec.as_ref();
    let policy = crate::actions::restart_policy(pod);
    let mut pending_init = 0;
    let mut failed_init = 0;
    let app_started = regular.iter().any(|s| {
        s.state.as_ref().is_some_and(|st| st.waiting.is_none())
            || s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
    });
    for c in init_containers(pod) {
        if crate::actions::is_sidecar(c) {
            // A running sidecar does not hold the pod back; nor a restarting one once the app runs.
            let running = init.iter().any(|s| {
                s.name == c.name && s.state.as_ref().is_some_and(|st| st.running.is_some())
            });
            if !running && !app_started {
                pending_init += 1;
            }
            continue;
        }
        let Some(st) = init
            .iter()
            .find(|s| s.name == c.name)
            .and_then(|s| s.state.as_ref())
        else {
            pending_init += 1;
            continue;
        };
        if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            let last_failed = init
                .iter()
                .find(|s| s.name == c.name)
                .and_then(|s| s.last_state.as_ref())
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0);
            if last_failed {
                failed_init += 1;
            } else {
                pending_init += 1;
            }
        }
    }
    let (mut unknown, mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        let Some(s) = regular.iter().find(|s| s.name == c.name) else {
            unknown += 1;
            continue;
        };
        match s.state.as_ref() {
            Some(st) if st.running.is_some() => running += 1,
            Some(st) if st.terminated.is_some() => {
                stopped += 1;
                if st.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
                    succeeded += 1;
                }
            }
            Some(st) if st.waiting.is_some() => {
                if s.last_state
                    .as_ref()
                    .is_some_and(|l| l.terminated.is_some())
                {
                    stopped += 1;
                } else {
                    waiting_n += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting_n > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

fn readiness_messages(unknown: &[String], unready: &[String], unready_word: &str) -> String {
    let mut parts = vec![];
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: [{}]",
            unknown.join(" ")
        ));
    }
    if !unready.is_empty() {
        parts.push(format!(
            "containers with {unready_word} status: [{}]",
            unready.join(" ")
        ));
    }
    parts.join(", ")
}

fn split_ready(names: &[Container], statuses: &[ContainerStatus]) -> (Vec<String>, Vec<String>) {
    let (mut unknown, mut unready) = (vec![], vec![]);
    for c in names {
        match statuses.iter().find(|s| s.name == c.name) {
            Some(s) if s.ready => {}
            Some(_) => unready.push(c.name.clone()),
            None => unknown.push(c.name.clone()),
        }
    }
    (unknown, unready)
}

/// ContainersReady and Initialized share one rule over their containers: complete when
/// every one is known and ready; `on_success` is what a Succeeded pod reports.
fn containers_condition(
    type_: &str,
    containers: &[Container],
    statuses: &[ContainerStatus],
    phase: &str,
    on_success: bool,
    (word, reason): (&str, &str),
) -> PodCondition {
    let (unknown, unready) = split_ready(containers, statuses);
    if phase == "Succeeded" && unknown.is_empty() {
        return condition(type_, on_success, Some("PodCompleted"), None);
    }
    if unknown.is_empty() && unready.is_empty() {
        return condition(type_, true, None, None);
    }
    let msg = readiness_messages(&unknown, &unready, word);
    condition(type_, false, Some(reason), Some(msg))
}

pub fn containers_ready_condition(
    pod: &Pod,
    statuses: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers_condition(
        "ContainersReady",
        spec_containers,
        statuses,
        phase,
        false,
        ("unready", "ContainersNotReady"),
    )
}

pub fn ready_condition(
    pod: &Pod,
    statuses: &[ContainerStatus],
    phase: &str,
    conditions: &[PodCondition],
) -> PodCondition {
    let cr = containers_ready_condition(pod, statuses, phase);
    if cr.status != "True" {
        return PodCondition {
            type_: "Ready".into(),
            ..cr
        };
    }
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default();
    let mut msgs = vec![];
    for g in gates {
        match conditions.iter().find(|c| c.type_ == g.condition_type) {
            None => msgs.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                g.condition_type
            )),
            Some(c) if c.status != "True" => msgs.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                g.condition_type, c.status
            )),
            _ => {}
        }
    }
    if !msgs.is_empty() {
        return condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(msgs.join(", ")),
        );
    }
    condition("Ready", true, None, None)
}

pub fn initialized_condition(pod: &Pod, statuses: &[ContainerStatus], phase: &str) -> PodCondition {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return condition("Initialized", true, None, None);
    }
    containers_condition(
        "Initialized",
        inits,
        statuses,
        phase,
        true,
        ("incomplete", "ContainersNotInitialized"),
    )
}

/// Conditions the kubelet owns; others (set by controllers) are carried over untouched.
pub const KUBELET_CONDITIONS: [&str; 4] =
    ["Initialized", "Ready", "ContainersReady", "PodScheduled"];

pub fn generate(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.clone().unwrap_or_default();
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let inits = init_containers(pod);
    let default_reason = if inits.is_empty() {
        CONTAINER_CREATING
    } else {
        POD_INITIALIZING
    };
    let init_statuses = container_statuses(inits, input, POD_INITIALIZING, true);
    let mut statuses = container_statuses(spec_containers, input, default_reason, false);
    statuses.sort_by(|a, b| a.name.cmp(&b.name));

    let mut phase = phase(pod, &init_statuses, &statuses).to_string();
    let (mut reason, mut message) = (old.reason.clone(), old.message.clone());
    if let Some((r, m)) = input.failure {
        phase = "Failed".into();
        reason = Some(r.to_string());
        message = Some(m.to_string());
    }
    // A terminal phase is final.
    if let Some(p) = old
        .phase
        .as_deref()
        .filter(|p| *p == "Succeeded" || *p == "Failed")
    {
        phase = p.to_string();
    }
    let old_conditions = old.conditions.clone().unwrap_or_default();
    let mut conditions = vec![
        initialized_condition(pod, &init_statuses, &phase),
        ready_condition(pod, &statuses, &phase, &old_conditions),
        containers_ready_condition(pod, &statuses, &phase),
        condition("PodScheduled", true, None, None),
    ];
    let now = time_of(input.now);
    for c in &mut conditions {
        let prev = old_conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match prev {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(now.clone())),
            _ => Some(now.clone()),
        };
        c.last_probe_time = prev.and_then(|p| p.last_probe_time.clone());
    }
    conditions.extend(
        old_conditions
            .iter()
            .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
            .cloned(),
    );

    let sandbox = input.runtime.sandboxes.first();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut ips: Vec<String> = vec![];
    if host_network {
        ips.extend(input.host_ip.map(str::to_string));
    } else if let Some(sb) = sandbox.filter(|s| s.ready && !s.ip.is_empty()) {
        ips.push(sb.ip.clone());
        ips.extend(sb.additional_ips.iter().cloned());
    }
    // Keep the last known IPs once the sandbox is gone, as upstream does.
    let (pod_ip, pod_ips) = if ips.is_empty() {
        (old.pod_ip.clone(), old.pod_ips.clone())
    } else {
        (
            Some(ips[0].clone()),
            Some(ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        )
    };

    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: input.host_ip.map(str::to_string).or(old.host_ip.clone()),
        pod_ip,
        pod_ips,
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: Some(
            pod.spec
                .as_ref()
                .map(pod_qos)
                .unwrap_or(crate::qos::QosClass::BestEffort)
                .as_str()
                .into(),
        ),
        container_statuses: Some(statuses),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        reason,
        message,
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
        c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
    }
    use crate::runtime::SandboxStatus;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(names: &[&str], policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: names
                    .iter()
                    .map(|n| Container {
                        name: n.to_string(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    })
                    .collect(),
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rc(name: &str, state: ContainerState, exit: i32, created: i64) -> RtContainer {
        RtContainer {
            id: format!("{name}{created}"),
            name: name.into(),
            restart_count: created as u32,
            hash: None,
            state,
            created_at: created * 1_000_000_000,
            started_at: created * 1_000_000_000,
            finished_at: (created + 1) * 1_000_000_000,
            exit_code: exit,
            reason: if state == ContainerState::Exited {
                if exit == 0 { "Completed" } else { "Error" }
            } else {
                ""
            }
            .into(),
            message: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_ref: "sha256:abc".into(),
            runtime: "containerd".into(),
            grace_period: None,
            log_path: String::new(),
            sandbox_id: String::new(),
        }
    }

    fn status_of(p: &Pod, rt: &RtPod, failures: &HashMap<String, StartFailure>) -> PodStatus {
        generate(&StatusInput {
            pod: p,
            runtime: rt,
            failures,
            host_ip: Some("192.0.2.2"),
            readiness: &HashMap::new(),
            startup: &HashMap::new(),
            failure: None,
            now: Timestamp::from_second(1_700_000_000).unwrap(),
        })
    }

    fn sb() -> SandboxStatus {
        SandboxStatus {
            id: "s".into(),
            attempt: 0,
            ready: true,
            created_at: 0,
            ip: "10.88.0.5".into(),
            additional_ips: vec![],
            host_network: false,
        }
    }

    #[test]
    fn pending_then_running() {
        let p = pod(&["a", "b"], "Always");
        let s = status_of(&p, &RtPod::default(), &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = s.container_statuses.unwrap();
        assert_eq!(waiting_reason(&cs[0]), Some("ContainerCreating"));
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a b]")
        );

        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![
                rc("a", ContainerState::Running, 0, 1),
                rc("b", ContainerState::Running, 0, 2),
            ],
        };
        let s = status_of(&p, &rt, &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let cs = s.container_statuses.unwrap();
        assert!(cs.iter().all(|c| c.ready && c.started == Some(true)));
        assert_eq!(cs[0].container_id.as_deref(), Some("containerd://a1"));
        assert!(s.conditions.unwrap().iter().all(|c| c.status == "True"));
    }

    #[test]
    fn container_conditions_name_what_is_missing() {
        let mut p = pod(&["a", "b"], "Always");
        let ready = |name: &str, ok: bool| ContainerStatus {
            name: name.into(),
            ready: ok,
            ..Default::default()
        };
        let c = containers_ready_condition(&p, &[ready("a", true)], "Running");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "False",
                Some("ContainersNotReady"),
                Some("containers with unknown status: [b]")
            )
        );
        let c = containers_ready_condition(&p, &[ready("a", true), ready("b", false)], "Running");
        assert_eq!(
            c.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        let c = containers_ready_condition(&p, &[ready("a", true), ready("b", true)], "Running");
        assert_eq!((c.status.as_str(), c.reason), ("True", None));
        let c =
            containers_ready_condition(&p, &[ready("a", false), ready("b", false)], "Succeeded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("PodCompleted")),
            "a finished pod's containers are not ready, but complete"
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.init_containers = Some(vec![Container {
                name: "i".into(),
                ..Default::default()
            }]);
        }
        let c = initialized_condition(&p, &[], "Pending");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "False",
                Some("ContainersNotInitialized"),
                Some("containers with unknown status: [i]")
            )
        );
        let c = initialized_condition(&p, &[ready("i", false)], "Pending");
        assert_eq!(
            c.message.as_deref(),
            Some("containers with incomplete status: [i]")
        );
        let c = initialized_condition(&p, &[ready("i", false)], "Succeeded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("PodCompleted"))
        );
    }

    #[test]
    fn a_terminated_container_gone_from_the_runtime_keeps_its_status() {
        let mut p = pod(&["a"], "Never");
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![rc("a", ContainerState::Exited, 3, 1)],
        };
        p.status = Some(status_of(&p, &rt, &HashMap::new()));
        // Garbage collected: the runtime has nothing of the pod any more.
        let s = status_of(&p, &RtPod::default(), &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.exit_code, 3);
    }

    #[test]
    fn terminal_phases_and_last_state() {
        let p = pod(&["a"], "Never");
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![rc("a", ContainerState::Exited, 3, 1)],
        };
        let s = status_of(&p, &rt, &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let t = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));

        let p = pod(&["a"], "OnFailure");
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![rc("a", ContainerState::Exited, 0, 1)],
        };
        let s = status_of(&p, &rt, &HashMap::new());
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));

        // crash loop: waiting with the last run as lastState, still Running
        let p = pod(&["a"], "Always");
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![
                rc("a", ContainerState::Exited, 1, 2),
                rc("a", ContainerState::Exited, 1, 1),
            ],
        };
        let f = HashMap::from([(
            "a".to_string(),
            StartFailure {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 10s".into(),
            },
        )]);
        let s = status_of(&p, &rt, &f);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let c = &s.container_statuses.unwrap()[0];
        assert_eq!(c.restart_count, 2);
        assert_eq!(waiting_reason(c), Some("CrashLoopBackOff"));
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }

    #[test]
    fn transition_times_are_kept_and_foreign_conditions_survive() {
        let mut p = pod(&["a"], "Always");
        let old_t = time_of(Timestamp::from_second(1_600_000_000).unwrap());
        p.status = Some(PodStatus {
            conditions: Some(vec![
                PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(old_t.clone()),
                    ..Default::default()
                },
                PodCondition {
                    type_: "example.com/gate".into(),
                    status: "False".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        let s = status_of(&p, &RtPod::default(), &HashMap::new());
        let conds = s.conditions.unwrap();
        let sched = conds.iter().find(|c| c.type_ == "PodScheduled").unwrap();
        assert_eq!(sched.last_transition_time, Some(old_t));
        assert!(conds.iter().any(|c| c.type_ == "example.com/gate"));
    }

    #[test]
    fn deadlines() {
        let mut p = pod(&["a"], "Always");
        let start = time_of(Timestamp::from_second(1000).unwrap());
        assert_eq!(
            active_deadline_left(&p, Some(&start), Timestamp::from_second(1005).unwrap()),
            None
        );
        p.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
        assert_eq!(
            active_deadline_left(&p, None, Timestamp::from_second(1005).unwrap()),
            None
        );
        let left = active_deadline_left(&p, Some(&start), Timestamp::from_second(1004).unwrap());
        assert_eq!(left, Some(std::time::Duration::from_secs(6)));
        let left = active_deadline_left(&p, Some(&start), Timestamp::from_second(2000).unwrap());
        assert_eq!(left, Some(std::time::Duration::ZERO));
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![rc("a", ContainerState::Running, 0, 1)],
        };
        let s = generate(&StatusInput {
            pod: &p,
            runtime: &rt,
            failures: &HashMap::new(),
            host_ip: None,
            readiness: &HashMap::new(),
            startup: &HashMap::new(),
            failure: Some(DEADLINE_EXCEEDED),
            now: Timestamp::from_second(2000).unwrap(),
        });
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn readiness_gates() {
        let mut p = pod(&["a"], "Always");
        p.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "g".into(),
            }]);
        let rt = RtPod {
            sandboxes: vec![sb()],
            containers: vec![rc("a", ContainerState::Running, 0, 1)],
        };
        let s = status_of(&p, &rt, &HashMap::new());
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("corresponding condition of pod readiness gate \"g\" does not exist.")
        );
    }
}
