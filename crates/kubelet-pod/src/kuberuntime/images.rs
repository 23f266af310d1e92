//! Image references and pulls with pull policy, secrets and back-off (upstream
//! `kuberuntime_image.go`, `images/image_manager.go`).

use super::*;

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

impl RuntimeManager {
    /// Makes sure the image is present per the pull policy; returns the image ref to run.
    pub(super) async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        image: &str,
        sandbox_config: &api::PodSandboxConfig,
        ws: &mut WorkerState,
        res: &mut SyncResult,
    ) -> Option<String> {
        let name = c.name.as_str();
        let mut fail = |reason: &str, message: String| {
            res.failures.insert(
                name.to_string(),
                StartFailure {
                    reason: reason.into(),
                    message,
                },
            );
        };
        if let Err(why) = validate_image(image) {
            let msg = format!("Failed to apply default image tag {image:?}: {why}");
            self.emit(pod, Some(name), WARNING, "InspectFailed", msg.clone());
            fail("InvalidImageName", msg);
            return None;
        }
        let policy = c.image_pull_policy.as_deref().unwrap_or_else(|| {
            let tagged = image
                .rsplit('/')
                .next()
                .is_some_and(|l| l.contains(':') && !l.ends_with(":latest"))
                || image.contains('@');
            if tagged { "IfNotPresent" } else { "Always" }
        });
        let present = match self.rt.image_status(image).await {
            Ok(i) => i.map(|i| i.id),
            Err(e) => {
                let msg = format!("Failed to inspect image {image:?}: {}", e.message());
                self.emit(pod, Some(name), WARNING, "InspectFailed", msg.clone());
                fail("ImageInspectError", msg);
                res.retry(Duration::from_secs(1));
                return None;
            }
        };
        match (policy, present) {
            ("Never", None) => {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.emit(pod, Some(name), WARNING, "ErrImageNeverPull", msg.clone());
                fail("ErrImageNeverPull", msg);
                None
            }
            ("Never" | "IfNotPresent", Some(id)) => {
                self.emit(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                Some(id)
            }
            _ => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                let key = format!("{uid}_{image}");
                let now = Instant::now();
                if ws.image_backoff.in_backoff_since_update(&key, now) {
                    let msg = format!("Back-off pulling image {image:?}");
                    self.emit(pod, Some(name), NORMAL, "BackOff", msg.clone());
                    fail("ImagePullBackOff", msg);
                    res.retry(
                        ws.image_backoff
                            .current(&key)
                            .unwrap_or(Duration::from_secs(10)),
                    );
                    return None;
                }
                let (auths, missing) = match &self.secrets {
                    Some(src) => {
                        crate::credentialprovider::pull_credentials(src.as_ref(), pod, image).await
                    }
                    None => (vec![], vec![]),
                };
                if !missing.is_empty() {
                    let msg = format!(
                        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                        missing.join(", ")
                    );
                    self.emit(pod, None, WARNING, "FailedToRetrieveImagePullSecret", msg);
                }
                self.emit(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulling",
                    format!("Pulling image {image:?}"),
                );
                let t0 = Instant::now();
                // Each matching credential in turn, most specific first; anonymous if none.
                let attempts: Vec<Option<api::AuthConfig>> = if auths.is_empty() {
                    vec![None]
                } else {
                    auths.into_iter().map(Some).collect()
                };
                let mut pulled = Err(CriError::Missing {
                    op: "PullImage",
                    what: "attempt",
                });
                for auth in attempts {
                    pulled = self
                        .rt
                        .pull_image(image, auth, Some(sandbox_config.clone()))
                        .await;
                    if pulled.is_ok() {
                        break;
                    }
                }
                match pulled {
                    Ok(r) => {
                        self.emit(
                            pod,
                            Some(name),
                            NORMAL,
                            "Pulled",
                            format!("Successfully pulled image {image:?} in {:?}", t0.elapsed()),
                        );
                        Some(r)
                    }
                    Err(e) => {
                        ws.image_backoff.next(&key, now, now);
                        let msg = e.message();
                        self.emit(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            format!("Failed to pull image {image:?}: {msg}"),
                        );
                        self.emit(
                            pod,
                            Some(name),
                            WARNING,
                            "Failed",
                            "Error: ErrImagePull".into(),
                        );
                        fail("ErrImagePull", msg);
                        res.retry(
                            ws.image_backoff
                                .current(&key)
                                .unwrap_or(Duration::from_secs(10)),
                        );
                        None
                    }
                }
            }
        }
    }
}
