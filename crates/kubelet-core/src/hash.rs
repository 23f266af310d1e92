//! A stable hash of a container's spec, stored on the container as
//! `io.kubernetes.container.hash` so that a changed spec is noticed, also after a restart.

use k8s_openapi::api::core::v1::Container;

/// FNV-1a over the container's canonical JSON: stable across builds and Rust versions,
/// unlike `std`'s hasher. Probes and resources are left out, as upstream does, so that
/// changing them alone does not restart the container.
pub fn container_hash(c: &Container) -> u64 {
    let mut c = c.clone();
    c.liveness_probe = None;
    c.readiness_probe = None;
    c.startup_probe = None;
    c.resources = None;
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    fnv1a(&bytes)
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_change_changes_hash_but_probe_does_not() {
        let a = Container {
            name: "a".into(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        let mut b = a.clone();
        b.image = Some("busybox:1.36".into());
        assert_ne!(container_hash(&a), container_hash(&b));
        let mut p = a.clone();
        p.readiness_probe = Some(Default::default());
        assert_eq!(container_hash(&a), container_hash(&p));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
