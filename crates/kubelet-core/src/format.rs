//! How messages name objects, as upstream's `pkg/kubelet/util/format`.

use k8s_openapi::api::core::v1::Pod;

/// `name_namespace(uid)`, as upstream's `format.Pod` names a pod in messages.
pub fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_pod_as_upstream_does() {
        let mut p = Pod::default();
        assert_eq!(pod_desc(&p), "_()");
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("prod".into());
        p.metadata.uid = Some("1-2".into());
        assert_eq!(pod_desc(&p), "web_prod(1-2)");
    }
}
