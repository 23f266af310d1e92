//! Image garbage collection (upstream `images/image_gc_manager.go`): every 5 minutes, when
//! the image filesystem is over `imageGCHighThresholdPercent`, unused images are removed,
//! least recently used first, until it is back at `imageGCLowThresholdPercent`. The eviction
//! manager also asks it to remove every unused image under disk pressure. The decisions are
//! `kubelet_core::images::gc`'s.

use k8s_openapi::jiff::Timestamp;
use kubelet_api::events::{Recorder, WARNING, node_ref};
use kubelet_core::clock::SharedClock;
use kubelet_core::images::gc::{ImageGcError, ImageRecords, amount_to_free};
use kubelet_cri::RuntimeService;
use kubelet_host::Host;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Upstream's `ImageGCPeriod`.
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);

/// `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`, `imageMinimumGCAge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
}

pub struct ImageGcManager {
    pub rt: Arc<dyn RuntimeService>,
    pub host: Arc<dyn Host>,
    pub policy: ImageGcPolicy,
    /// The pause image, always in use; `None`: the runtime's own, as it says.
    pub sandbox_image: Option<String>,
    pub clock: SharedClock,
    pub recorder: Recorder,
    pub node: String,
    records: Mutex<ImageRecords>,
    busy: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ImageGcManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageGcManager")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A runtime call that failed, for the collection's error.
fn cri(e: kubelet_cri::CriError) -> ImageGcError {
    ImageGcError::Deletion {
        wanted: 0,
        freed: 0,
        errors: e.to_string(),
    }
}

impl ImageGcManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rt: Arc<dyn RuntimeService>,
        host: Arc<dyn Host>,
        policy: ImageGcPolicy,
        sandbox_image: Option<String>,
        clock: SharedClock,
        recorder: Recorder,
        node: String,
    ) -> Self {
        ImageGcManager {
            rt,
            host,
            policy,
            sandbox_image,
            clock,
            recorder,
            node,
            records: Mutex::default(),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Upstream `detectImages`: the images in use (by any container, running or not, and the
    /// pause image), with the records brought up to date.
    async fn detect(
        &self,
        detected: Timestamp,
        now: Timestamp,
    ) -> Result<HashSet<String>, ImageGcError> {
        let mut in_use: HashSet<String> = HashSet::new();
        let sandbox = match &self.sandbox_image {
            Some(s) => Some(s.clone()),
            None => self.runtime_sandbox_image().await,
        };
        if let Some(s) = sandbox
            && let Ok(Some(i)) = self.rt.image_status(&s).await
        {
            in_use.insert(i.id);
        }
        let images = self.rt.list_images().await.map_err(cri)?;
        for c in self.rt.list_containers(None).await.map_err(cri)? {
            in_use.insert(c.image_ref);
        }
        let images: Vec<(String, u64)> = images.into_iter().map(|i| (i.id, i.size)).collect();
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .detect(&images, &in_use, detected, now);
        Ok(in_use)
    }

    /// The pause image the runtime is configured with (containerd's `sandboxImage`, from its
    /// verbose CRI status).
    async fn runtime_sandbox_image(&self) -> Option<String> {
        let info = self.rt.status_info().await.ok()?;
        let config: serde_json::Value = serde_json::from_str(info.get("config")?).ok()?;
        config["sandboxImage"].as_str().map(str::to_string)
    }

    /// Images already on the node at start count as old (upstream detects with a zero time
    /// first), so a collection soon after start can remove them.
    pub async fn detect_existing(&self) {
        if let Err(e) = self.detect(Timestamp::UNIX_EPOCH, self.clock.now()).await {
            warn!(error = %e, "image GC: detecting the node's images failed");
        }
    }

    /// Removes unused images, in order, until `want` bytes are freed; what was freed.
    pub async fn free_space(&self, want: u64) -> Result<u64, ImageGcError> {
        // One collection at a time (the periodic one and the eviction manager's).
        let _one = self.busy.lock().await;
        let now = self.clock.now();
        let in_use = self.detect(now, now).await?;
        let candidates = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .candidates(&in_use, now, self.policy.min_age);
        let (mut freed, mut errors) = (0u64, vec![]);
        for (id, size) in candidates {
            info!(image = %id, bytes = size, "image GC: removing image");
            if let Err(e) = self.rt.remove_image(&id).await {
                errors.push(e.to_string());
                continue;
            }
            self.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .records
                .remove(&id);
            freed = freed.saturating_add(size);
            if freed >= want {
                break;
            }
        }
        if !errors.is_empty() {
            return Err(ImageGcError::Deletion {
                wanted: want,
                freed,
                errors: format!("[{}]", errors.join(", ")),
            });
        }
        Ok(freed)
    }

    /// Every unused image old enough goes (the eviction manager's node-level reclaim).
    pub async fn delete_unused_images(&self) -> Result<u64, ImageGcError> {
        self.free_space(u64::MAX).await
    }

    /// The image filesystem's capacity and available bytes.
    async fn image_fs(&self) -> Result<(u64, u64), ImageGcError> {
        let fs = self.rt.image_fs_info().await.map_err(cri)?;
        let mount = fs
            .first()
            .and_then(|u| u.fs_id.as_ref())
            .map(|id| id.mountpoint.clone())
            .unwrap_or_default();
        let s = self
            .host
            .fs_stats(Path::new(&mount))
            .map_err(|e| ImageGcError::Deletion {
                wanted: 0,
                freed: 0,
                errors: e.to_string(),
            })?;
        Ok((s.capacity_bytes, s.available_bytes))
    }

    /// Upstream `GarbageCollect`.
    pub async fn garbage_collect(&self) -> Result<(), ImageGcError> {
        let (capacity, available) = self.image_fs().await?;
        let p = self.policy;
        let want = match amount_to_free(
            capacity,
            available,
            p.high_threshold_percent,
            p.low_threshold_percent,
        ) {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(()),
            Err(e) => {
                self.event("InvalidDiskCapacity", &e);
                return Err(e);
            }
        };
        info!(
            want,
            high = p.high_threshold_percent,
            low = p.low_threshold_percent,
            "image GC: disk usage on the image filesystem is over the high threshold"
        );
        let freed = self.free_space(want).await?;
        if freed < want {
            let e = ImageGcError::NotEnough {
                wanted: want,
                freed,
            };
            self.event("FreeDiskSpaceFailed", &e);
            return Err(e);
        }
        Ok(())
    }

    fn event(&self, reason: &str, e: &ImageGcError) {
        self.recorder
            .emit(node_ref(&self.node), WARNING, reason, e.to_string());
    }

    /// Collects every [`IMAGE_GC_PERIOD`]; a second failure in a row is an `ImageGCFailed`
    /// event (the first may be stats not yet ready, as upstream says).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.detect_existing().await;
        let mut failed_before = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(IMAGE_GC_PERIOD) => {}
            }
            let now = self.clock.now();
            if let Err(e) = self.detect(now, now).await {
                warn!(error = %e, "image GC: detecting images failed");
            }
            // Upstream: a high threshold of 100 disables the periodic collection.
            if self.policy.high_threshold_percent >= 100 {
                continue;
            }
            match self.garbage_collect().await {
                Ok(()) => failed_before = false,
                Err(e) if failed_before => {
                    error!(error = %e, "image garbage collection failed multiple times in a row");
                    self.event("ImageGCFailed", &e);
                }
                Err(e) => {
                    warn!(error = %e, "image garbage collection failed once");
                    failed_before = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelet_cri::fake::FakeRuntime;

    fn manager(rt: Arc<FakeRuntime>, min_age: Duration) -> ImageGcManager {
        ImageGcManager::new(
            rt,
            Arc::new(kubelet_host::FakeHost::default()),
            ImageGcPolicy {
                high_threshold_percent: 85,
                low_threshold_percent: 80,
                min_age,
            },
            Some("pause".into()),
            kubelet_core::clock::FakeClock::new(),
            Recorder::disabled(),
            "n1".into(),
        )
    }

    #[tokio::test]
    async fn unused_images_go_and_images_in_use_stay() {
        let rt = Arc::new(FakeRuntime::with_images(&[
            "pause", "busybox", "nginx", "redis",
        ]));
        // A container (even one that has exited) keeps its image.
        let sb = rt
            .run_pod_sandbox(kubelet_cri::api::PodSandboxConfig::default(), String::new())
            .await
            .unwrap();
        let cfg = kubelet_cri::api::ContainerConfig {
            image: Some(kubelet_cri::api::ImageSpec {
                image: "nginx".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        rt.create_container(&sb, cfg, kubelet_cri::api::PodSandboxConfig::default())
            .await
            .unwrap();
        let m = manager(rt.clone(), Duration::ZERO);
        let freed = m.delete_unused_images().await.unwrap();
        assert_eq!(freed, 2048, "busybox and redis (1 KiB each in the fake)");
        let mut left: Vec<String> = rt
            .list_images()
            .await
            .unwrap()
            .into_iter()
            .flat_map(|i| i.repo_tags)
            .collect();
        left.sort();
        assert_eq!(left, ["nginx", "pause"], "in use, and the pause image");
    }

    #[tokio::test]
    async fn young_images_are_kept() {
        let rt = Arc::new(FakeRuntime::with_images(&["pause", "busybox"]));
        let m = manager(rt.clone(), Duration::from_secs(120));
        assert_eq!(m.delete_unused_images().await.unwrap(), 0);
        assert_eq!(rt.list_images().await.unwrap().len(), 2);
        // Found there at start, they count as old.
        let m = manager(rt.clone(), Duration::from_secs(120));
        m.detect_existing().await;
        assert_eq!(m.delete_unused_images().await.unwrap(), 1024);
        assert_eq!(
            rt.list_images().await.unwrap().len(),
            1,
            "the pause image stays"
        );
    }
}
