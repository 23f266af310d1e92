//! Whether the node's labels satisfy a pod's `nodeSelector` and required node affinity
//! (upstream `PodMatchesNodeSelectorAndAffinityTerms`, component-helpers `nodeaffinity`).

use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorRequirement, Pod};
use std::collections::BTreeMap;

/// `nodeSelector` (every pair), then the required node affinity terms (any term).
pub fn matches(pod: &Pod, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| selector_matches(r, labels, node.metadata.name.as_deref()))
}

/// Terms are ORed; an empty term, or no terms, matches nothing.
fn selector_matches(
    sel: &NodeSelector,
    labels: &BTreeMap<String, String>,
    name: Option<&str>,
) -> bool {
    sel.node_selector_terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or_default();
        let fields = t.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs.iter().all(|r| label_requirement(r, labels)) && fields_match(fields, name)
    })
}

fn label_requirement(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let have = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => !values.is_empty() && have.is_some_and(|v| values.contains(v)),
        "NotIn" => !values.is_empty() && have.is_none_or(|v| !values.contains(v)),
        "Exists" => values.is_empty() && have.is_some(),
        "DoesNotExist" => values.is_empty() && have.is_none(),
        op @ ("Gt" | "Lt") => {
            let [want] = values else { return false };
            let (Some(have), Ok(want)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                want.parse::<i64>(),
            ) else {
                return false;
            };
            if op == "Gt" { have > want } else { have < want }
        }
        // An unknown operator is a parse error: the term matches nothing.
        _ => false,
    }
}

/// `matchFields` know `metadata.name` only, with `In` or `NotIn` and one value; they are
/// not checked on a node without a name (upstream's `len(nodeFields) > 0`).
fn fields_match(fields: &[NodeSelectorRequirement], name: Option<&str>) -> bool {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return true;
    };
    fields.iter().all(|r| {
        let [want] = r.values.as_deref().unwrap_or_default() else {
            return false;
        };
        let have = if r.key == "metadata.name" { name } else { "" };
        match r.operator.as_str() {
            "In" => have == want,
            "NotIn" => have != want,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n1",
            "labels": {"disk": "ssd", "zone": "a", "cores": "8"}}}))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = serde_json::json!({"containers": []});
        if let (Some(o), Some(e)) = (s.as_object_mut(), spec.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": s})).unwrap()
    }

    fn required(terms: serde_json::Value) -> Pod {
        pod(serde_json::json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    #[test]
    fn node_selector() {
        let n = node();
        assert!(matches(&pod(serde_json::json!({})), &n));
        assert!(matches(
            &pod(serde_json::json!({"nodeSelector": {"disk": "ssd"}})),
            &n
        ));
        assert!(!matches(
            &pod(serde_json::json!({"nodeSelector": {"disk": "hdd"}})),
            &n
        ));
        assert!(!matches(
            &pod(serde_json::json!({"nodeSelector": {"disk": "ssd", "gpu": "yes"}})),
            &n
        ));
    }

    #[test]
    fn required_affinity_terms_are_ored_and_expressions_anded() {
        let n = node();
        let expr = |k: &str, op: &str, v: serde_json::Value| serde_json::json!({"key": k, "operator": op, "values": v});
        let yes = [
            expr("disk", "In", serde_json::json!(["ssd", "nvme"])),
            expr("disk", "NotIn", serde_json::json!(["hdd"])),
            expr("gpu", "NotIn", serde_json::json!(["x"])),
            serde_json::json!({"key": "zone", "operator": "Exists"}),
            serde_json::json!({"key": "gpu", "operator": "DoesNotExist"}),
            expr("cores", "Gt", serde_json::json!(["4"])),
            expr("cores", "Lt", serde_json::json!(["9"])),
        ];
        for e in &yes {
            assert!(
                matches(
                    &required(serde_json::json!([{"matchExpressions": [e]}])),
                    &n
                ),
                "{e}"
            );
        }
        let no = [
            expr("disk", "In", serde_json::json!(["hdd"])),
            expr("disk", "In", serde_json::json!([])),
            expr("disk", "NotIn", serde_json::json!(["ssd"])),
            serde_json::json!({"key": "gpu", "operator": "Exists"}),
            expr("cores", "Gt", serde_json::json!(["8"])),
            expr("zone", "Gt", serde_json::json!(["1"])),
            expr("cores", "Gt", serde_json::json!(["1", "2"])),
            expr("disk", "Bogus", serde_json::json!(["ssd"])),
        ];
        for e in &no {
            assert!(
                !matches(
                    &required(serde_json::json!([{"matchExpressions": [e]}])),
                    &n
                ),
                "{e}"
            );
        }
        // Two terms: one fails, one matches.
        let t = serde_json::json!([{"matchExpressions": [no[0]]}, {"matchExpressions": [yes[0]]}]);
        assert!(matches(&required(t), &n));
        // Both expressions of one term must hold.
        let t = serde_json::json!([{"matchExpressions": [no[0], yes[0]]}]);
        assert!(!matches(&required(t), &n));
        // No terms, or an empty term, match nothing.
        assert!(!matches(&required(serde_json::json!([])), &n));
        assert!(!matches(&required(serde_json::json!([{}])), &n));
    }

    #[test]
    fn match_fields_know_the_node_name() {
        let n = node();
        let f = |op: &str, v: &str| {
            required(serde_json::json!([{"matchFields": [
                {"key": "metadata.name", "operator": op, "values": [v]}]}]))
        };
        assert!(matches(&f("In", "n1"), &n));
        assert!(!matches(&f("In", "n2"), &n));
        assert!(matches(&f("NotIn", "n2"), &n));
        assert!(!matches(&f("Exists", "n1"), &n));
    }
}
