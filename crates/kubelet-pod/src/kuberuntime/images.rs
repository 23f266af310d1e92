//! Image references and pulls with pull policy, secrets and back-off (upstream
//! `kuberuntime_image.go`, `images/image_manager.go`).

use super::*;
use kubelet_core::images::{self, PullAction, PullPolicy};

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
        let policy = PullPolicy::of(c.image_pull_policy.as_deref(), image);
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
        let key = images::backoff_key(pod.metadata.uid.as_deref().unwrap_or_default(), image);
        let now = Instant::now();
        let in_backoff = ws.image_backoff.in_backoff_since_update(&key, now);
        let retry_after = |ws: &WorkerState| {
            ws.image_backoff
                .current(&key)
                .unwrap_or(images::FIRST_RETRY)
        };
        match images::pull_action(policy, present, in_backoff) {
            PullAction::NeverPullMissing => {
                let msg =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.emit(pod, Some(name), WARNING, "ErrImageNeverPull", msg.clone());
                fail("ErrImageNeverPull", msg);
                None
            }
            PullAction::UsePresent(id) => {
                self.emit(
                    pod,
                    Some(name),
                    NORMAL,
                    "Pulled",
                    format!("Container image {image:?} already present on machine"),
                );
                Some(id)
            }
            PullAction::BackOff => {
                let msg = format!("Back-off pulling image {image:?}");
                self.emit(pod, Some(name), NORMAL, "BackOff", msg.clone());
                fail("ImagePullBackOff", msg);
                res.retry(retry_after(ws));
                None
            }
            PullAction::Pull => {
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
                        res.retry(retry_after(ws));
                        None
                    }
                }
            }
        }
    }
}
