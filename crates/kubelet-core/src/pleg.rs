//! The PLEG's relist verdicts (upstream `pleg/generic.go` relist), decided from two
//! snapshots: which pods' runtime state changed, and which runtime pods are orphans.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One pod's sandboxes and containers as a relist saw them: (id, CRI state), sorted.
pub type Fingerprint = Vec<(String, i32)>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelistDiff {
    /// Pods whose sandboxes or containers appeared, went, or changed state: wake them.
    pub changed: Vec<String>,
    /// Pods in the runtime that no worker knows: clean them up.
    pub orphans: Vec<String>,
}

/// `seen` and `now` map pod UIDs to fingerprints. `known` is the workers' pods, once the
/// API's pod list has been handed over; before that nothing can be judged an orphan.
pub fn relist_diff(
    seen: &HashMap<String, Fingerprint>,
    now: &HashMap<String, Fingerprint>,
    known: Option<&HashSet<String>>,
) -> RelistDiff {
    let mut changed: Vec<String> = now
        .iter()
        .filter(|(uid, fp)| seen.get(*uid) != Some(*fp))
        .map(|(uid, _)| uid.clone())
        .chain(seen.keys().filter(|u| !now.contains_key(*u)).cloned())
        .collect();
    changed.sort();
    let mut orphans: Vec<String> = match known {
        Some(known) => now
            .keys()
            .filter(|u| !known.contains(*u))
            .cloned()
            .collect(),
        None => vec![],
    };
    orphans.sort();
    RelistDiff { changed, orphans }
}

/// Builds the fingerprints from (pod UID, object id, state) triples in any order.
pub fn fingerprints<'a>(
    items: impl IntoIterator<Item = (&'a str, &'a str, i32)>,
) -> HashMap<String, Fingerprint> {
    let mut by_pod: BTreeMap<String, Fingerprint> = BTreeMap::new();
    for (uid, id, state) in items {
        by_pod
            .entry(uid.to_string())
            .or_default()
            .push((id.to_string(), state));
    }
    by_pod
        .into_iter()
        .map(|(uid, mut fp)| {
            fp.sort();
            (uid, fp)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(items: &[(&'static str, &'static str, i32)]) -> HashMap<String, Fingerprint> {
        fingerprints(items.iter().copied())
    }

    #[test]
    fn unchanged_pods_are_left_alone() {
        let a = fp(&[("u1", "s1", 0), ("u1", "c1", 1)]);
        // Order does not matter.
        let b = fp(&[("u1", "c1", 1), ("u1", "s1", 0)]);
        assert_eq!(relist_diff(&a, &b, None), RelistDiff::default());
    }

    #[test]
    fn new_gone_and_changed_pods_are_woken() {
        let seen = fp(&[("u1", "c1", 1), ("u2", "c2", 1), ("u3", "c3", 1)]);
        let now = fp(&[("u1", "c1", 2), ("u2", "c2", 1), ("u4", "c4", 0)]);
        let d = relist_diff(&seen, &now, None);
        assert_eq!(d.changed, ["u1", "u3", "u4"]);
        assert!(
            d.orphans.is_empty(),
            "no orphans before the pod list is synced"
        );
    }

    #[test]
    fn a_new_container_in_a_known_pod_is_a_change() {
        let seen = fp(&[("u1", "s1", 0)]);
        let now = fp(&[("u1", "s1", 0), ("u1", "c1", 0)]);
        assert_eq!(relist_diff(&seen, &now, None).changed, ["u1"]);
    }

    #[test]
    fn orphans_are_runtime_pods_no_worker_knows() {
        let now = fp(&[("u1", "c1", 1), ("u2", "c2", 1)]);
        let known: HashSet<String> = ["u1".to_string()].into();
        let d = relist_diff(&now, &now, Some(&known));
        assert_eq!(d.orphans, ["u2"]);
        assert!(d.changed.is_empty());
    }
}
