//! Image references, pull policy and the image back-off key, as upstream's
//! `images/image_manager.go` decides them; the pull itself is kuberuntime's.

pub mod gc;

use std::time::Duration;

/// An image reference that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("couldn't parse image reference {image:?}: {why}")]
pub struct InvalidImageError {
    pub image: String,
    pub why: &'static str,
}

/// A reference is valid if it parses as a docker reference: lowercase repository path, an
/// optional tag and digest.
pub fn validate_image(image: &str) -> Result<(), InvalidImageError> {
    let err = |why: &'static str| {
        Err(InvalidImageError {
            image: image.into(),
            why,
        })
    };
    if image.is_empty() {
        return err("invalid reference format");
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return err("invalid reference format");
        };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return err("invalid reference format");
        }
    }
    // A tag follows the last ':' after the last '/'.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || t.starts_with(['.', '-']))
    {
        return err("invalid reference format");
    }
    let mut parts = repo.split('/');
    let first = parts.next().unwrap_or("");
    let domain_like =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !domain_like && first.chars().any(|c| c.is_ascii_uppercase()) {
        return err("repository name must be lowercase");
    }
    for (i, comp) in repo.split('/').enumerate() {
        if i == 0 && domain_like {
            if comp.is_empty()
                || !comp
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            {
                return err("invalid reference format");
            }
            continue;
        }
        if comp.is_empty()
            || !comp
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        {
            return err(if comp.chars().any(|c| c.is_ascii_uppercase()) {
                "repository name must be lowercase"
            } else {
                "invalid reference format"
            });
        }
        if comp.starts_with(['.', '_', '-']) || comp.ends_with(['.', '_', '-']) {
            return err("invalid reference format");
        }
    }
    Ok(())
}

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The given policy, or the API server's default when unset: `IfNotPresent` for a
    /// tagged (not `:latest`) or digested reference, else `Always`. A value the API
    /// would refuse is treated as `Always`.
    pub fn of(explicit: Option<&str>, image: &str) -> PullPolicy {
        match explicit {
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            Some(_) => PullPolicy::Always,
            None => {
                let tagged = image
                    .rsplit('/')
                    .next()
                    .is_some_and(|l| l.contains(':') && !l.ends_with(":latest"))
                    || image.contains('@');
                if tagged {
                    PullPolicy::IfNotPresent
                } else {
                    PullPolicy::Always
                }
            }
        }
    }
}

/// What to do about a container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullAction {
    /// Run the image already present (its id).
    UsePresent(String),
    /// `Never` and the image is absent: ErrImageNeverPull.
    NeverPullMissing,
    /// The last pull failed too recently: ImagePullBackOff.
    BackOff,
    /// Pull it.
    Pull,
}

/// The decision of upstream's `EnsureImageExists`, given whether the image is present and
/// whether its back-off entry is still running.
pub fn pull_action(policy: PullPolicy, present: Option<String>, in_backoff: bool) -> PullAction {
    match (policy, present) {
        (PullPolicy::Never, None) => PullAction::NeverPullMissing,
        (PullPolicy::Never | PullPolicy::IfNotPresent, Some(id)) => PullAction::UsePresent(id),
        _ if in_backoff => PullAction::BackOff,
        _ => PullAction::Pull,
    }
}

/// The image back-off key: one entry per pod and image, as upstream's puller keys it.
pub fn backoff_key(pod_uid: &str, image: &str) -> String {
    format!("{pod_uid}_{image}")
}

/// How long to wait before the next attempt when the back-off has no entry yet.
pub const FIRST_RETRY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "docker.io/library/busybox:latest",
            "localhost:5000/a/b:c",
            "registry.k8s.io/pause:3.6",
            "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate_image(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Busybox",
            "a b",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a@sha256:xyz",
            "UPPER/x",
        ] {
            assert!(validate_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_why() {
        assert_eq!(
            validate_image("Busybox").map_err(|e| e.to_string()),
            Err(
                r#"couldn't parse image reference "Busybox": repository name must be lowercase"#
                    .into()
            )
        );
        assert_eq!(
            validate_image("a@sha256:12").map_err(|e| e.why),
            Err("invalid reference format"),
            "a digest is at least 32 hex digits"
        );
        assert!(
            validate_image("REG.example/team/app:1").is_ok(),
            "a domain may have capitals"
        );
        assert!(
            validate_image(&format!("a:{}", "t".repeat(129))).is_err(),
            "tags are at most 128"
        );
    }

    #[test]
    fn default_policy_follows_the_tag() {
        assert_eq!(PullPolicy::of(None, "busybox"), PullPolicy::Always);
        assert_eq!(PullPolicy::of(None, "busybox:latest"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::of(None, "busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::of(None, "localhost:5000/busybox"),
            PullPolicy::Always,
            "a registry port is not a tag"
        );
        assert_eq!(
            PullPolicy::of(None, "a@sha256:00"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::of(Some("Never"), "busybox"), PullPolicy::Never);
        assert_eq!(PullPolicy::of(Some("Always"), "b:1"), PullPolicy::Always);
    }

    fn policy() -> impl Strategy<Value = PullPolicy> {
        prop::sample::select(vec![
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never,
        ])
    }

    proptest! {
        /// Never never pulls; a present image is used unless the policy is Always; a pull
        /// in back-off is never started.
        #[test]
        fn pull_rules(p in policy(), present in prop::option::of("[a-f0-9]{4}"), backoff in any::<bool>()) {
            let a = pull_action(p, present.clone(), backoff);
            if p == PullPolicy::Never {
                prop_assert_ne!(&a, &PullAction::Pull);
                prop_assert_ne!(&a, &PullAction::BackOff);
            }
            if let (Some(id), true) = (&present, p != PullPolicy::Always) {
                prop_assert_eq!(&a, &PullAction::UsePresent(id.clone()));
            }
            if a == PullAction::Pull {
                prop_assert!(!backoff);
                prop_assert!(p == PullPolicy::Always || present.is_none());
            }
            if p == PullPolicy::Always {
                prop_assert_eq!(a, if backoff { PullAction::BackOff } else { PullAction::Pull });
            }
        }

        /// References built from the grammar are accepted, and their upper-cased repository
        /// is refused.
        #[test]
        fn grammar_references_parse(
            host in prop::option::of("[a-z0-9]{1,8}\\.[a-z]{2,3}(:[0-9]{2,5})?"),
            path in prop::collection::vec("[a-z0-9]{1,6}([._-][a-z0-9]{1,4})?", 1..4),
            tag in prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let mut r = host.map(|h| format!("{h}/")).unwrap_or_default();
            r.push_str(&path.join("/"));
            let last = r.rfind('/').map_or(0, |i| i + 1);
            let mut upper = r.clone();
            if let Some(t) = &tag {
                r.push(':');
                r.push_str(t);
            }
            prop_assert!(validate_image(&r).is_ok(), "{}", r);
            // Only the domain may have capitals.
            upper.replace_range(last.., &upper[last..].to_uppercase());
            if upper.chars().any(|c| c.is_ascii_uppercase()) {
                prop_assert!(validate_image(&upper).is_err(), "{}", upper);
            }
        }

        /// Distinct pods or images never share a back-off entry.
        #[test]
        fn backoff_keys_are_distinct(a in "[a-z0-9-]{1,12}", b in "[a-z0-9-]{1,12}", i in "[a-z:/.]{1,12}", j in "[a-z:/.]{1,12}") {
            if (a.as_str(), i.as_str()) != (b.as_str(), j.as_str()) {
                prop_assert_ne!(backoff_key(&a, &i), backoff_key(&b, &j));
            }
        }
    }
}
