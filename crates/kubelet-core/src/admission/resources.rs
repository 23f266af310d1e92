//! What a pod asks of the node and what the node has left (upstream scheduler's
//! `noderesources.Fits`, `framework.Resource`, and `pkg/api/v1/resource.GetResourceRequest`).

use crate::quantity::parse_milli;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Amounts as the scheduler's `Resource` keeps them: cpu in thousandths, the rest in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pods: i64,
    /// Extended resources, hugepages, `kubernetes.io/`-prefixed and attachable volumes.
    pub scalar: BTreeMap<String, i64>,
}

/// A Kubernetes resource name outside `kubernetes.io/` with a valid qualified name
/// (upstream `IsExtendedResourceName`).
pub fn is_extended(name: &str) -> bool {
    if is_native(name) || name.starts_with("requests.") {
        return false;
    }
    qualified_name(&format!("requests.{name}"))
}

/// Unprefixed or in the `kubernetes.io/` namespace.
pub fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Resources the scheduler counts besides cpu, memory, storage and pods
/// (upstream `schedutil.IsScalarResourceName`).
pub fn is_scalar(name: &str) -> bool {
    is_extended(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

fn qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    name_ok && prefix_ok
}

/// A quantity in thousandths; unparsable counts as zero (the API server validated it).
fn milli(q: &Quantity) -> i128 {
    parse_milli(&q.0).unwrap_or(0)
}

/// `Quantity.Value()`: whole units, rounded up.
fn value(milli: i128) -> i64 {
    let v = if milli >= 0 {
        (milli + 999) / 1000
    } else {
        milli / 1000
    };
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn milli_i64(m: i128) -> i64 {
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

impl Resources {
    /// `Resource.Add`: each quantity rounded on its own, then summed.
    fn add(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            let m = milli(q);
            match name.as_str() {
                CPU => self.milli_cpu = self.milli_cpu.saturating_add(milli_i64(m)),
                MEMORY => self.memory = self.memory.saturating_add(value(m)),
                PODS => self.allowed_pods = self.allowed_pods.saturating_add(value(m)),
                EPHEMERAL_STORAGE => {
                    self.ephemeral_storage = self.ephemeral_storage.saturating_add(value(m))
                }
                n if is_scalar(n) => {
                    let e = self.scalar.entry(n.to_string()).or_default();
                    *e = e.saturating_add(value(m));
                }
                _ => {}
            }
        }
    }

    /// `Resource.SetMaxResource`: an init container's request where it is larger.
    fn set_max(&mut self, list: &BTreeMap<String, Quantity>) {
        for (name, q) in list {
            let m = milli(q);
            match name.as_str() {
                CPU => self.milli_cpu = self.milli_cpu.max(milli_i64(m)),
                MEMORY => self.memory = self.memory.max(value(m)),
                EPHEMERAL_STORAGE => self.ephemeral_storage = self.ephemeral_storage.max(value(m)),
                n if is_scalar(n) => {
                    let e = self.scalar.entry(n.to_string()).or_default();
                    *e = (*e).max(value(m));
                }
                _ => {}
            }
        }
    }

    fn add_all(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.is_empty()
    }

    /// What the node offers pods: its `status.allocatable`.
    pub fn allocatable(node: &Node) -> Resources {
        let mut r = Resources::default();
        if let Some(a) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
            r.add(a);
        }
        r
    }
}

fn requests(c: &Container) -> Option<&BTreeMap<String, Quantity>> {
    c.resources.as_ref().and_then(|r| r.requests.as_ref())
}

/// A pod's requests as the scheduler sums them (`computePodResourceRequest`): the
/// containers' sum, or an init container's request where larger, plus the overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut r = Resources::default();
    let Some(spec) = pod.spec.as_ref() else {
        return r;
    };
    for c in &spec.containers {
        if let Some(q) = requests(c) {
            r.add(q);
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(q) = requests(c) {
            r.set_max(q);
        }
    }
    if let Some(o) = &spec.overhead {
        r.add(o);
    }
    r
}

/// One request of a pod, as upstream's `GetResourceRequest` (cpu in thousandths, pods 1).
pub fn resource_request(pod: &Pod, name: &str) -> i64 {
    if name == PODS {
        return 1;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let get = |c: &Container| requests(c).and_then(|r| r.get(name)).map(milli);
    let mut total: i128 = spec.containers.iter().filter_map(get).sum();
    for m in spec.init_containers.iter().flatten().filter_map(get) {
        total = total.max(m);
    }
    if total != 0
        && let Some(o) = spec.overhead.as_ref().and_then(|o| o.get(name))
    {
        total += milli(o);
    }
    if name == CPU {
        milli_i64(total)
    } else {
        value(total)
    }
}

/// A resource the pod asks for more of than the node has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

impl Insufficient {
    /// How much is missing (upstream `GetInsufficientAmount`).
    pub fn amount(&self) -> i64 {
        self.requested
            .saturating_sub(self.capacity.saturating_sub(self.used))
    }
}

/// Extended resources the node does not know at all are not checked (cluster-level
/// resources; upstream `removeMissingExtendedResources`, containers only).
fn without_missing_extended(pod: &Pod, allocatable: &Resources) -> Pod {
    let mut p = pod.clone();
    if let Some(spec) = p.spec.as_mut() {
        for c in &mut spec.containers {
            if let Some(r) = c.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                r.retain(|name, _| !is_extended(name) || allocatable.scalar.contains_key(name));
            }
        }
    }
    p
}

/// What the pod needs that the node, with `others` on it, does not have (upstream
/// `fitsRequest`, in its order: pods, cpu, memory, ephemeral-storage, the rest by name).
pub fn fits(pod: &Pod, others: &[&Pod], node: &Node) -> Vec<Insufficient> {
    let alloc = Resources::allocatable(node);
    let pod = without_missing_extended(pod, &alloc);
    let want = pod_requests(&pod);
    let mut used = Resources::default();
    for o in others {
        used.add_all(&pod_requests(o));
    }
    let mut out = vec![];
    let n = i64::try_from(others.len()).unwrap_or(i64::MAX);
    if n.saturating_add(1) > alloc.allowed_pods {
        out.push(Insufficient {
            resource: PODS.into(),
            requested: 1,
            used: n,
            capacity: alloc.allowed_pods,
        });
    }
    if want.is_zero() {
        return out;
    }
    let mut check = |name: &str, want: i64, used: i64, cap: i64| {
        if cap < want.saturating_add(used) {
            out.push(Insufficient {
                resource: name.into(),
                requested: want,
                used,
                capacity: cap,
            });
        }
    };
    check(CPU, want.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check(MEMORY, want.memory, used.memory, alloc.memory);
    check(
        EPHEMERAL_STORAGE,
        want.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    for (name, q) in &want.scalar {
        let u = used.scalar.get(name).copied().unwrap_or(0);
        let cap = alloc.scalar.get(name).copied().unwrap_or(0);
        check(name, *q, u, cap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    fn node(alloc: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n"},
            "status": {"allocatable": alloc}}))
        .unwrap()
    }

    fn with_requests(r: serde_json::Value) -> Pod {
        pod(serde_json::json!({"containers": [{"name": "c", "resources": {"requests": r}}]}))
    }

    #[test]
    fn names() {
        assert!(is_extended("example.com/gpu"));
        assert!(!is_extended("cpu"));
        assert!(!is_extended("kubernetes.io/foo"));
        assert!(!is_extended("requests.example.com/gpu"));
        assert!(!is_extended("Example.com/gpu"));
        assert!(is_scalar("hugepages-2Mi"));
        assert!(is_scalar("attachable-volumes-csi-x"));
        assert!(is_scalar("example.com/gpu"));
        assert!(!is_scalar("cpu") && !is_scalar("storage"));
    }

    #[test]
    fn requests_sum_containers_take_the_largest_init_container_and_add_overhead() {
        let p = pod(serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.2", "hugepages-2Mi": "4Mi"}}}],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "512Ki"}}}],
            "overhead": {"cpu": "10m"}}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 1 << 20);
        assert_eq!(r.scalar["hugepages-2Mi"], 4 << 20);
        assert_eq!(resource_request(&p, CPU), 1010);
        assert_eq!(resource_request(&p, MEMORY), 1 << 20);
        assert_eq!(resource_request(&p, PODS), 1);
        assert_eq!(resource_request(&p, EPHEMERAL_STORAGE), 0);
    }

    #[test]
    fn too_many_pods_is_checked_even_for_a_pod_asking_nothing() {
        let n = node(serde_json::json!({"cpu": "1", "memory": "1Gi", "pods": "2"}));
        let a = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        assert!(fits(&a, &[&a], &n).is_empty());
        let v = fits(&a, &[&a, &a], &n);
        assert_eq!(
            v,
            vec![Insufficient {
                resource: "pods".into(),
                requested: 1,
                used: 2,
                capacity: 2
            }]
        );
    }

    #[test]
    fn cpu_memory_and_scalars_are_checked_against_what_is_used() {
        let n = node(
            serde_json::json!({"cpu": "2", "memory": "1Gi", "pods": "110",
            "ephemeral-storage": "10Gi", "hugepages-2Mi": "0"}),
        );
        let big = with_requests(serde_json::json!({"cpu": "100"}));
        let v = fits(&big, &[], &n);
        assert_eq!(v.len(), 1);
        assert_eq!(
            (
                v[0].resource.as_str(),
                v[0].requested,
                v[0].used,
                v[0].capacity
            ),
            ("cpu", 100_000, 0, 2000)
        );
        assert_eq!(v[0].amount(), 98_000);
        let half = with_requests(serde_json::json!({"cpu": "1", "memory": "600Mi"}));
        assert!(fits(&half, &[], &n).is_empty());
        let v = fits(&half, &[&half], &n);
        assert_eq!(
            v.iter().map(|i| i.resource.as_str()).collect::<Vec<_>>(),
            ["memory"]
        );
        let huge = with_requests(serde_json::json!({"hugepages-2Mi": "2Mi"}));
        assert_eq!(fits(&huge, &[], &n)[0].resource, "hugepages-2Mi");
        // An extended resource the node has never heard of is the cluster's business.
        let gpu = with_requests(serde_json::json!({"example.com/gpu": "1"}));
        assert!(fits(&gpu, &[], &n).is_empty());
        let n2 = node(serde_json::json!({"cpu": "2", "pods": "10", "example.com/gpu": "1"}));
        assert!(fits(&gpu, &[], &n2).is_empty());
        assert_eq!(fits(&gpu, &[&gpu], &n2)[0].resource, "example.com/gpu");
    }
}
