//! Eviction signals and thresholds (upstream `eviction/api` and the threshold half of
//! `eviction/helpers.go`): parsing the config, observing the signals in the summary, and the
//! manager's bookkeeping from one pass to the next (grace periods, minimum reclaim, the
//! pressure transition period), as a state machine driven by the caller's clock.

use crate::stats::Summary;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the eviction manager watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    AllocatableMemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

pub const ALL_SIGNALS: [Signal; 7] = [
    Signal::MemoryAvailable,
    Signal::AllocatableMemoryAvailable,
    Signal::NodeFsAvailable,
    Signal::NodeFsInodesFree,
    Signal::ImageFsAvailable,
    Signal::ImageFsInodesFree,
    Signal::PidAvailable,
];

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        ALL_SIGNALS.into_iter().find(|x| x.as_str() == s)
    }

    /// The resource to reclaim (upstream `signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition a met threshold reports (upstream `signalToNodeCondition`).
    pub fn node_condition(self) -> &'static str {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => "MemoryPressure",
            Signal::PidAvailable => "PIDPressure",
            _ => "DiskPressure",
        }
    }

    pub fn is_memory(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable
        )
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A threshold's amount: a quantity (bytes, inodes, pids) or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Quantity(i64),
    /// 0.0..=1.0, kept as Go's float32.
    Percentage(f32),
}

impl ThresholdValue {
    /// Upstream `GetThresholdQuantity`.
    pub fn quantity(self, capacity: i64) -> i64 {
        match self {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }
}

/// One threshold of the config; hard when its grace period is zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: ThresholdValue,
    pub grace_period: Duration,
    pub min_reclaim: Option<ThresholdValue>,
}

impl Threshold {
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }

    /// Upstream `hasThreshold`'s equality (the minimum reclaim does not count).
    fn same(&self, o: &Threshold) -> bool {
        self.signal == o.signal && self.grace_period == o.grace_period && self.value == o.value
    }
}

/// A config error, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(pub String);

fn signal_of(s: &str) -> Result<Signal, ThresholdError> {
    Signal::parse(s).ok_or_else(|| ThresholdError(format!("unsupported eviction signal {s}")))
}

fn percentage(v: &str) -> Result<f32, ThresholdError> {
    v.trim_end_matches('%')
        .parse::<f32>()
        .map(|p| p / 100.0)
        .map_err(|_| ThresholdError(format!("invalid percentage {v:?}")))
}

fn quantity(v: &str) -> Result<i64, ThresholdError> {
    let m = crate::quantity::parse_milli(v)
        .map_err(|_| ThresholdError(format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {v:?}")))?;
    let units = if m >= 0 { (m + 999) / 1000 } else { m / 1000 };
    i64::try_from(units).map_err(|_| ThresholdError(format!("quantity {v:?} is too large")))
}

/// One `evictionHard`/`evictionSoft` entry; `None` for "0%" and "100%", which upstream drops.
fn statement(signal: &str, v: &str) -> Result<Option<Threshold>, ThresholdError> {
    let signal = signal_of(signal)?;
    let value = if v.ends_with('%') {
        if v == "0%" || v == "100%" {
            return Ok(None);
        }
        let p = percentage(v)?;
        if p < 0.0 {
            return Err(ThresholdError(format!(
                "eviction percentage threshold {signal} must be >= 0%: {v}"
            )));
        }
        // Upstream compares the fraction with 100, so any percentage up to 10000% passes.
        if p > 100.0 {
            return Err(ThresholdError(format!(
                "eviction percentage threshold {signal} must be <= 100%: {v}"
            )));
        }
        ThresholdValue::Percentage(p)
    } else {
        let q = quantity(v)?;
        if q <= 0 {
            return Err(ThresholdError(format!(
                "eviction threshold {signal} must be positive: {v}"
            )));
        }
        ThresholdValue::Quantity(q)
    };
    Ok(Some(Threshold {
        signal,
        value,
        grace_period: Duration::ZERO,
        min_reclaim: None,
    }))
}

/// The eviction config as the manager uses it (upstream `ParseThresholdConfig`): hard
/// thresholds, soft ones with their grace periods, minimum reclaims; with `pods` in
/// `enforceNodeAllocatable`, each hard `memory.available` threshold is also applied to the
/// pods' own cgroup (`allocatableMemory.available`).
pub fn parse_thresholds(
    hard: &BTreeMap<String, String>,
    soft: &BTreeMap<String, String>,
    soft_grace: &BTreeMap<String, Duration>,
    min_reclaim: &BTreeMap<String, String>,
    enforce_pods: bool,
) -> Result<Vec<Threshold>, ThresholdError> {
    let mut out = vec![];
    for (s, v) in hard {
        out.extend(statement(s, v)?);
    }
    for s in soft_grace.keys() {
        signal_of(s)?;
    }
    let mut reclaim: BTreeMap<Signal, ThresholdValue> = BTreeMap::new();
    for (s, v) in min_reclaim {
        let signal = signal_of(s)?;
        let value = if v.ends_with('%') {
            let p = percentage(v)?;
            if p <= 0.0 {
                return Err(ThresholdError(format!(
                    "eviction percentage minimum reclaim {signal} must be positive: {v}"
                )));
            }
            ThresholdValue::Percentage(p)
        } else {
            let q = quantity(v)?;
            if q < 0 {
                return Err(ThresholdError(format!(
                    "negative eviction minimum reclaim specified for {signal}"
                )));
            }
            ThresholdValue::Quantity(q)
        };
        reclaim.insert(signal, value);
    }
    for (s, v) in soft {
        let Some(mut t) = statement(s, v)? else {
            continue;
        };
        t.grace_period = *soft_grace.get(s).ok_or_else(|| {
            ThresholdError(format!(
                "grace period must be specified for the soft eviction threshold {}",
                t.signal
            ))
        })?;
        out.push(t);
    }
    for t in &mut out {
        t.min_reclaim = reclaim.get(&t.signal).copied();
    }
    if enforce_pods {
        let extra: Vec<Threshold> = out
            .iter()
            .filter(|t| t.signal == Signal::MemoryAvailable && t.is_hard())
            .map(|t| Threshold {
                signal: Signal::AllocatableMemoryAvailable,
                ..*t
            })
            .collect();
        out.extend(extra);
    }
    Ok(out)
}

/// What node-level reclaim a disk signal gets before any pod is evicted (upstream
/// `buildSignalToNodeReclaimFuncs`): (dead containers, unused images). With a dedicated
/// imagefs, nodefs pressure reclaims nothing of the kind (images are elsewhere) and imagefs
/// pressure both; on a shared filesystem either signal reclaims both.
pub fn node_reclaim(signal: Signal, dedicated_imagefs: bool) -> (bool, bool) {
    match signal {
        Signal::NodeFsAvailable | Signal::NodeFsInodesFree if dedicated_imagefs => (false, false),
        Signal::NodeFsAvailable
        | Signal::NodeFsInodesFree
        | Signal::ImageFsAvailable
        | Signal::ImageFsInodesFree => (true, true),
        _ => (false, false),
    }
}

/// The memory cgroup a kernel threshold notification watches (upstream
/// `memoryThresholdNotifier`): the node's root memcg for `memory.available`, the pods' cgroup
/// for `allocatableMemory.available`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemcgTarget {
    Node,
    Pods,
}

/// For each memory threshold (by its index in `thresholds`), where and at what memcg usage
/// the kernel should notify (upstream `UpdateThreshold`): capacity − threshold + inactive
/// file, so that the notification comes when the working set reaches capacity − threshold.
pub fn memcg_thresholds(thresholds: &[Threshold], s: &Summary) -> Vec<(usize, MemcgTarget, u64)> {
    let pods = s
        .node
        .system_containers
        .iter()
        .find(|c| c.name == "pods")
        .and_then(|c| c.memory.as_ref());
    thresholds
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let (target, m) = match t.signal {
                Signal::MemoryAvailable => (MemcgTarget::Node, s.node.memory.as_ref()?),
                Signal::AllocatableMemoryAvailable => (MemcgTarget::Pods, pods?),
                _ => return None,
            };
            let (usage, ws, avail) = (m.usage_bytes?, m.working_set_bytes?, m.available_bytes?);
            let capacity = self::i(avail.saturating_add(ws));
            let inactive_file = self::i(usage.saturating_sub(ws));
            let at = capacity
                .saturating_sub(t.value.quantity(capacity))
                .saturating_add(inactive_file);
            u64::try_from(at).ok().map(|at| (i, target, at))
        })
        .collect()
}

/// A signal as observed: what is available of what capacity, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
    pub time: Option<Timestamp>,
}

pub type Observations = BTreeMap<Signal, Observation>;

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The signals the summary gives (upstream `makeSignalObservations`).
pub fn observe(s: &Summary) -> Observations {
    let mut o = Observations::new();
    let t =
        |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| t.as_ref().map(|t| t.0);
    let mut memory = |signal, m: &Option<crate::stats::MemoryStats>| {
        if let Some(m) = m
            && let (Some(a), Some(ws)) = (m.available_bytes, m.working_set_bytes)
        {
            o.insert(
                signal,
                Observation {
                    available: i(a),
                    capacity: i(a.saturating_add(ws)),
                    time: t(&m.time),
                },
            );
        }
    };
    memory(Signal::MemoryAvailable, &s.node.memory);
    if let Some(pods) = s.node.system_containers.iter().find(|c| c.name == "pods") {
        memory(Signal::AllocatableMemoryAvailable, &pods.memory);
    }
    let mut fs = |bytes, inodes, f: &Option<crate::stats::FsStats>| {
        let Some(f) = f else { return };
        if let (Some(a), Some(c)) = (f.available_bytes, f.capacity_bytes) {
            o.insert(
                bytes,
                Observation {
                    available: i(a),
                    capacity: i(c),
                    time: t(&f.time),
                },
            );
            if let (Some(a), Some(c)) = (f.inodes_free, f.inodes) {
                o.insert(
                    inodes,
                    Observation {
                        available: i(a),
                        capacity: i(c),
                        time: t(&f.time),
                    },
                );
            }
        }
    };
    fs(
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        &s.node.fs,
    );
    let image_fs = s.node.runtime.as_ref().and_then(|r| r.image_fs.clone());
    fs(
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        &image_fs,
    );
    if let Some(r) = &s.node.rlimit
        && let (Some(max), Some(n)) = (r.max_pid, r.num_of_running_processes)
    {
        o.insert(
            Signal::PidAvailable,
            Observation {
                available: max - n,
                capacity: max,
                time: t(&r.time),
            },
        );
    }
    o
}

/// The thresholds whose signal is below them (with their minimum reclaim added when
/// `min_reclaim`: a met threshold stays met until that much more is free).
pub fn thresholds_met(ts: &[Threshold], obs: &Observations, min_reclaim: bool) -> Vec<Threshold> {
    ts.iter()
        .filter(|t| {
            let Some(o) = obs.get(&t.signal) else {
                return false;
            };
            let mut q = t.value.quantity(o.capacity);
            if min_reclaim && let Some(r) = t.min_reclaim {
                q = q.saturating_add(r.quantity(o.capacity));
            }
            q > o.available
        })
        .copied()
        .collect()
}

/// What the manager carries from one pass to the next.
#[derive(Debug, Clone, Default)]
pub struct EvictionState {
    /// Thresholds met and past their grace period at the last pass.
    pub thresholds_met: Vec<Threshold>,
    /// When each threshold now met was first seen met.
    pub first_observed: Vec<(Threshold, Timestamp)>,
    /// When each pressure condition was last seen.
    pub conditions_last_observed: BTreeMap<&'static str, Timestamp>,
    pub last_observations: Observations,
    /// The node conditions reported now (kept for the transition period).
    pub conditions: Vec<&'static str>,
}

/// One pass's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// Node conditions to report (`MemoryPressure`, `DiskPressure`, `PIDPressure`).
    pub conditions: Vec<&'static str>,
    /// The threshold to act on (memory first) and its resource, if any threshold is met
    /// past its grace period on fresh stats.
    pub reclaim: Option<Threshold>,
}

/// One pass of upstream's `synchronize`, up to choosing what to reclaim.
pub fn synchronize(
    st: &mut EvictionState,
    config: &[Threshold],
    obs: Observations,
    now: Timestamp,
    transition: Duration,
) -> Pass {
    let mut met = thresholds_met(config, &obs, false);
    if !st.thresholds_met.is_empty() {
        for t in thresholds_met(&st.thresholds_met, &obs, true) {
            if !met.iter().any(|m| m.same(&t)) {
                met.push(t);
            }
        }
    }
    let first: Vec<(Threshold, Timestamp)> = met
        .iter()
        .map(|t| {
            let at = st
                .first_observed
                .iter()
                .find(|(f, _)| f.same(t))
                .map_or(now, |(_, at)| *at);
            (*t, at)
        })
        .collect();
    let mut seen: Vec<&'static str> = vec![];
    for t in &met {
        let c = t.signal.node_condition();
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    for c in &seen {
        st.conditions_last_observed.insert(c, now);
    }
    let transition = SignedDuration::try_from(transition).unwrap_or(SignedDuration::MAX);
    let mut conditions: Vec<&'static str> = ["MemoryPressure", "DiskPressure", "PIDPressure"]
        .into_iter()
        .filter(|c| {
            st.conditions_last_observed
                .get(c)
                .is_some_and(|at| now.duration_since(*at) < transition)
        })
        .collect();
    conditions.dedup();
    let due: Vec<Threshold> = first
        .iter()
        .filter(|(t, at)| {
            let waited = now.duration_since(*at);
            SignedDuration::try_from(t.grace_period).is_ok_and(|g| waited >= g)
        })
        .map(|(t, _)| *t)
        .collect();
    st.first_observed = first;
    st.conditions = conditions.clone();
    st.thresholds_met = due.clone();
    // Act only on signals observed afresh since the last pass (upstream
    // `thresholdsUpdatedStats`).
    let mut fresh: Vec<Threshold> = due
        .into_iter()
        .filter(|t| {
            let Some(o) = obs.get(&t.signal) else {
                return false;
            };
            match (
                o.time,
                st.last_observations.get(&t.signal).and_then(|l| l.time),
            ) {
                (Some(now_t), Some(last_t)) => now_t > last_t,
                _ => true,
            }
        })
        .collect();
    st.last_observations = obs;
    // Memory first (upstream `byEvictionPriority`), the config's order otherwise.
    fresh.sort_by_key(|t| !t.signal.is_memory());
    Pass {
        conditions,
        reclaim: fresh.first().copied(),
    }
}

#[cfg(test)]
mod memcg_tests {
    use super::*;

    #[test]
    fn node_reclaim_depends_on_a_dedicated_imagefs() {
        assert_eq!(node_reclaim(Signal::NodeFsAvailable, false), (true, true));
        assert_eq!(node_reclaim(Signal::NodeFsAvailable, true), (false, false));
        assert_eq!(node_reclaim(Signal::ImageFsInodesFree, true), (true, true));
        assert_eq!(node_reclaim(Signal::MemoryAvailable, false), (false, false));
    }
    use crate::stats::{ContainerStats, MemoryStats, NodeStats};

    #[test]
    fn memcg_thresholds_follow_upstreams_arithmetic() {
        let mem = |usage, ws, avail| MemoryStats {
            usage_bytes: Some(usage),
            working_set_bytes: Some(ws),
            available_bytes: Some(avail),
            ..Default::default()
        };
        let summary = Summary {
            node: NodeStats {
                // capacity 1000, inactive file 100
                memory: Some(mem(700, 600, 400)),
                system_containers: vec![ContainerStats {
                    name: "pods".into(),
                    memory: Some(mem(300, 250, 550)),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        let t = |signal, value| Threshold {
            signal,
            value,
            grace_period: Duration::ZERO,
            min_reclaim: None,
        };
        let ts = [
            t(Signal::MemoryAvailable, ThresholdValue::Quantity(100)),
            t(Signal::NodeFsAvailable, ThresholdValue::Quantity(100)),
            t(
                Signal::AllocatableMemoryAvailable,
                ThresholdValue::Percentage(0.1),
            ),
        ];
        assert_eq!(
            memcg_thresholds(&ts, &summary),
            // node: 1000 - 100 + 100; pods: capacity 800, 800 - 80 + 50
            vec![(0, MemcgTarget::Node, 1000), (2, MemcgTarget::Pods, 770)]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parsing_follows_upstream() {
        let hard = map(&[
            ("memory.available", "100Mi"),
            ("nodefs.available", "10%"),
            ("imagefs.available", "0%"),
        ]);
        let soft = map(&[("memory.available", "300Mi")]);
        let grace = BTreeMap::from([("memory.available".to_string(), Duration::from_secs(30))]);
        let reclaim = map(&[("memory.available", "50Mi")]);
        let t = parse_thresholds(&hard, &soft, &grace, &reclaim, true).unwrap();
        let sigs: Vec<(Signal, bool)> = t.iter().map(|t| (t.signal, t.is_hard())).collect();
        assert_eq!(
            sigs,
            [
                (Signal::MemoryAvailable, true),
                (Signal::NodeFsAvailable, true),
                (Signal::MemoryAvailable, false),
                (Signal::AllocatableMemoryAvailable, true),
            ]
        );
        assert_eq!(t[0].value, ThresholdValue::Quantity(100 << 20));
        assert_eq!(t[0].min_reclaim, Some(ThresholdValue::Quantity(50 << 20)));
        assert_eq!(t[1].value, ThresholdValue::Percentage(0.1));
        assert_eq!(t[2].grace_period, Duration::from_secs(30));
        let e = |h: &[(&str, &str)], s: &[(&str, &str)]| {
            parse_thresholds(&map(h), &map(s), &BTreeMap::new(), &BTreeMap::new(), false)
                .unwrap_err()
                .0
        };
        assert_eq!(
            e(&[("memory.free", "1Mi")], &[]),
            "unsupported eviction signal memory.free"
        );
        assert_eq!(
            e(&[("memory.available", "-1Mi")], &[]),
            "eviction threshold memory.available must be positive: -1Mi"
        );
        assert_eq!(
            e(&[("nodefs.available", "-5%")], &[]),
            "eviction percentage threshold nodefs.available must be >= 0%: -5%"
        );
        assert_eq!(
            e(&[], &[("memory.available", "1Gi")]),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
    }

    fn obs(available: i64, time: i64) -> Observations {
        Observations::from([(
            Signal::MemoryAvailable,
            Observation {
                available,
                capacity: 1000,
                time: Some(Timestamp::from_second(time).unwrap()),
            },
        )])
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn hard_thresholds_act_at_once_and_hold_until_the_minimum_reclaim() {
        let t = Threshold {
            signal: Signal::MemoryAvailable,
            value: ThresholdValue::Quantity(100),
            grace_period: Duration::ZERO,
            min_reclaim: Some(ThresholdValue::Quantity(50)),
        };
        let mut st = EvictionState::default();
        let period = Duration::from_secs(300);
        let p = synchronize(&mut st, &[t], obs(200, 1), at(1), period);
        assert_eq!(
            p,
            Pass {
                conditions: vec![],
                reclaim: None
            }
        );
        let p = synchronize(&mut st, &[t], obs(90, 2), at(2), period);
        assert_eq!(p.conditions, ["MemoryPressure"]);
        assert_eq!(p.reclaim, Some(t));
        // Above the threshold but not above threshold + minimum reclaim: still met.
        let p = synchronize(&mut st, &[t], obs(120, 3), at(3), period);
        assert_eq!(p.reclaim, Some(t));
        // The same stats again: no action on stale figures.
        let p = synchronize(&mut st, &[t], obs(120, 3), at(4), period);
        assert_eq!(p.reclaim, None);
        // Reclaimed: no action, but the condition holds for the transition period.
        let p = synchronize(&mut st, &[t], obs(500, 5), at(5), period);
        assert_eq!(
            p,
            Pass {
                conditions: vec!["MemoryPressure"],
                reclaim: None
            }
        );
        let p = synchronize(&mut st, &[t], obs(500, 400), at(400), period);
        assert_eq!(
            p,
            Pass {
                conditions: vec![],
                reclaim: None
            }
        );
    }

    #[test]
    fn soft_thresholds_wait_for_their_grace_period() {
        let t = Threshold {
            signal: Signal::MemoryAvailable,
            value: ThresholdValue::Percentage(0.5),
            grace_period: Duration::from_secs(30),
            min_reclaim: None,
        };
        let mut st = EvictionState::default();
        let period = Duration::from_secs(10);
        let p = synchronize(&mut st, &[t], obs(400, 1), at(1), period);
        assert_eq!(
            p,
            Pass {
                conditions: vec!["MemoryPressure"],
                reclaim: None
            }
        );
        let p = synchronize(&mut st, &[t], obs(400, 20), at(20), period);
        assert_eq!(p.reclaim, None);
        let p = synchronize(&mut st, &[t], obs(400, 31), at(31), period);
        assert_eq!(p.reclaim, Some(t));
        // Recovered before the grace period ran out again: the clock starts over.
        synchronize(&mut st, &[t], obs(600, 32), at(32), period);
        let p = synchronize(&mut st, &[t], obs(400, 33), at(33), period);
        assert_eq!(p.reclaim, None);
    }

    #[test]
    fn signals_come_from_the_summary() {
        let s: Summary = serde_json::from_value(serde_json::json!({
            "node": {"nodeName": "n", "memory": {"availableBytes": 300, "workingSetBytes": 700},
                "systemContainers": [{"name": "pods", "memory": {"availableBytes": 10, "workingSetBytes": 90}}],
                "fs": {"availableBytes": 5, "capacityBytes": 50, "inodesFree": 7, "inodes": 70},
                "runtime": {"imageFs": {"availableBytes": 6, "capacityBytes": 60}},
                "rlimit": {"maxpid": 1000, "curproc": 400}},
            "pods": []})).unwrap();
        let o = observe(&s);
        let av = |s| (o[&s].available, o[&s].capacity);
        assert_eq!(av(Signal::MemoryAvailable), (300, 1000));
        assert_eq!(av(Signal::AllocatableMemoryAvailable), (10, 100));
        assert_eq!(av(Signal::NodeFsAvailable), (5, 50));
        assert_eq!(av(Signal::NodeFsInodesFree), (7, 70));
        assert_eq!(av(Signal::ImageFsAvailable), (6, 60));
        assert!(!o.contains_key(&Signal::ImageFsInodesFree));
        assert_eq!(av(Signal::PidAvailable), (600, 1000));
    }
}
