//! Container garbage collection decisions (upstream `kuberuntime/kuberuntime_gc.go`): which
//! dead containers and sandboxes go, node-wide. Dead containers are grouped per pod and
//! container name; a deleted pod's all go (and a terminated pod's when the eviction manager
//! asks), the rest keep `maxPerPodContainer` newest, and the node at most `maxContainers`;
//! sandboxes keep the newest per live pod, and an active one never goes.

use std::collections::BTreeMap;
use std::time::Duration;

/// `--minimum-container-ttl-duration`, `--maximum-dead-containers-per-container`,
/// `--maximum-dead-containers` (negative: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    pub min_age: Duration,
    pub max_per_pod_container: i32,
    pub max_containers: i32,
}

impl Default for GcPolicy {
    /// Upstream's flag defaults.
    fn default() -> Self {
        GcPolicy {
            min_age: Duration::ZERO,
            max_per_pod_container: 1,
            max_containers: -1,
        }
    }
}

/// A container that is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadContainer {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    /// Creation time, ns since the epoch.
    pub created: i64,
}

/// A sandbox of a pod; active when ready or still holding containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSandbox {
    pub id: String,
    pub pod_uid: String,
    pub created: i64,
    pub active: bool,
}

/// What the kubelet knows of a pod (upstream `IsPodDeleted`/`IsPodTerminated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Gone from the kubelet, evicted, or deleted with nothing running.
    Deleted,
    /// Failed or Succeeded.
    Terminated,
    Live,
    /// Not this kubelet's to judge (a standalone kubelet's view of other kubelets' pods):
    /// never touched.
    Foreign,
}

/// The oldest `n` of a group (newest kept), by creation time.
fn oldest(mut v: Vec<&DeadContainer>, n: usize) -> Vec<&DeadContainer> {
    v.sort_by_key(|c| std::cmp::Reverse(c.created));
    let keep = v.len().saturating_sub(n);
    v.split_off(keep)
}

type Units<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a DeadContainer>>;

/// Newest first in each unit; past `n`, they go.
fn trim<'a>(units: &mut Units<'a>, n: usize, out: &mut Vec<&'a DeadContainer>) {
    for v in units.values_mut() {
        v.sort_by_key(|c| std::cmp::Reverse(c.created));
        if v.len() > n {
            out.extend(v.split_off(n));
        }
    }
}

/// The dead containers to remove (upstream `evictContainers`). `now` in ns since the epoch;
/// a pod's containers are only judged by its state once every pod source has been seen.
pub fn containers_to_remove(
    dead: &[DeadContainer],
    policy: GcPolicy,
    now: i64,
    all_sources_ready: bool,
    evict_terminated: bool,
    state: &dyn Fn(&str) -> PodState,
) -> Vec<String> {
    let newest = now.saturating_sub(i64::try_from(policy.min_age.as_nanos()).unwrap_or(i64::MAX));
    let mut units: Units<'_> = BTreeMap::new();
    for c in dead
        .iter()
        .filter(|c| c.created <= newest && state(&c.pod_uid) != PodState::Foreign)
    {
        units.entry((&c.pod_uid, &c.name)).or_default().push(c);
    }
    let mut out: Vec<&DeadContainer> = vec![];
    if all_sources_ready {
        units.retain(|(uid, _), v| {
            let all = match state(uid) {
                PodState::Deleted => true,
                PodState::Terminated => evict_terminated,
                PodState::Live | PodState::Foreign => false,
            };
            if all {
                out.append(v);
            }
            !all
        });
    }
    if let Ok(n) = usize::try_from(policy.max_per_pod_container) {
        trim(&mut units, n, &mut out);
    }
    if let Ok(max) = usize::try_from(policy.max_containers) {
        let total: usize = units.values().map(Vec::len).sum();
        if total > max {
            let per_unit = (max / units.len().max(1)).max(1);
            trim(&mut units, per_unit, &mut out);
            let rest: Vec<&DeadContainer> = units.values().flatten().copied().collect();
            if rest.len() > max {
                let n = rest.len() - max;
                out.extend(oldest(rest, n));
            }
        }
    }
    let mut ids: Vec<String> = out.into_iter().map(|c| c.id.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The sandboxes to remove (upstream `evictSandboxes`): of a deleted pod (or a terminated
/// one when asked) every inactive one, of a live pod every inactive one but the newest.
pub fn sandboxes_to_remove(
    sandboxes: &[GcSandbox],
    evict_terminated: bool,
    state: &dyn Fn(&str) -> PodState,
) -> Vec<String> {
    let mut by_pod: BTreeMap<&str, Vec<&GcSandbox>> = BTreeMap::new();
    for s in sandboxes {
        by_pod.entry(&s.pod_uid).or_default().push(s);
    }
    let mut out = vec![];
    for (uid, mut v) in by_pod {
        v.sort_by_key(|c| std::cmp::Reverse(c.created));
        let keep = match state(uid) {
            PodState::Foreign => continue,
            PodState::Deleted => 0,
            PodState::Terminated if evict_terminated => 0,
            _ => 1,
        };
        out.extend(
            v.into_iter()
                .skip(keep)
                .filter(|s| !s.active)
                .map(|s| s.id.clone()),
        );
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(id: &str, uid: &str, name: &str, created: i64) -> DeadContainer {
        DeadContainer {
            id: id.into(),
            pod_uid: uid.into(),
            name: name.into(),
            created,
        }
    }

    fn state(uid: &str) -> PodState {
        match uid {
            "gone" => PodState::Deleted,
            "done" => PodState::Terminated,
            "theirs" => PodState::Foreign,
            _ => PodState::Live,
        }
    }

    #[test]
    fn keeps_the_newest_per_container_and_all_of_nothing_for_deleted_pods() {
        let d = [
            dead("a1", "live", "a", 1),
            dead("a2", "live", "a", 2),
            dead("a3", "live", "a", 3),
            dead("b1", "live", "b", 1),
            dead("g1", "gone", "x", 1),
            dead("t1", "done", "y", 1),
            dead("f1", "theirs", "z", 1),
            dead("f2", "theirs", "z", 2),
        ];
        let p = GcPolicy::default();
        assert_eq!(
            containers_to_remove(&d, p, 100, true, false, &state),
            ["a1", "a2", "g1"]
        );
        // The eviction manager's reclaim also takes terminated pods' containers.
        assert_eq!(
            containers_to_remove(&d, p, 100, true, true, &state),
            ["a1", "a2", "g1", "t1"]
        );
        // Before the pod sources are read, no pod counts as deleted.
        assert_eq!(
            containers_to_remove(&d, p, 100, false, true, &state),
            ["a1", "a2"]
        );
        // Too young to go.
        let young = GcPolicy {
            min_age: Duration::from_nanos(98),
            ..p
        };
        // a3 is too young to count: of a1 and a2, the newer stays.
        assert_eq!(
            containers_to_remove(&d, young, 100, true, false, &state),
            ["a1", "g1"]
        );
    }

    #[test]
    fn the_node_wide_cap_takes_the_oldest() {
        let d = [
            dead("a1", "p", "a", 1),
            dead("a2", "p", "a", 5),
            dead("b1", "q", "b", 2),
            dead("b2", "q", "b", 6),
            dead("c1", "r", "c", 3),
        ];
        let p = GcPolicy {
            max_per_pod_container: -1,
            max_containers: 2,
            ..GcPolicy::default()
        };
        // One per unit first (a2, b2, c1), then the oldest of those past the cap (c1).
        assert_eq!(
            containers_to_remove(&d, p, 100, true, false, &state),
            ["a1", "b1", "c1"]
        );
    }

    #[test]
    fn sandboxes_keep_the_newest_of_live_pods_and_active_ones() {
        let sb = |id: &str, uid: &str, created: i64, active: bool| GcSandbox {
            id: id.into(),
            pod_uid: uid.into(),
            created,
            active,
        };
        let s = [
            sb("l1", "live", 1, false),
            sb("l2", "live", 2, false),
            sb("g1", "gone", 1, false),
            sb("g2", "gone", 2, true),
            sb("t1", "done", 1, false),
            sb("f1", "theirs", 1, false),
            sb("f2", "theirs", 2, false),
        ];
        assert_eq!(sandboxes_to_remove(&s, false, &state), ["g1", "l1"]);
        assert_eq!(sandboxes_to_remove(&s, true, &state), ["g1", "l1", "t1"]);
    }
}
