//! Image garbage collection decisions (upstream `images/image_gc_manager.go`): which images
//! the node has seen and when each was first detected and last used, how much to free when
//! the image filesystem crosses `imageGCHighThresholdPercent`, and which unused images go
//! first (least recently used, then oldest detected; none younger than `imageMinimumGCAge`).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// What is known of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRecord {
    pub first_detected: Timestamp,
    /// When a container last used it (`None`: never seen in use).
    pub last_used: Option<Timestamp>,
    pub size: u64,
}

/// The image records carried from one detection to the next.
#[derive(Debug, Clone, Default)]
pub struct ImageRecords {
    pub records: BTreeMap<String, ImageRecord>,
}

impl ImageRecords {
    /// Upstream `detectImages`: new images are recorded as detected at `detected` (the
    /// first detection at start passes the epoch: images already there count as old), images
    /// in use get `last_used = now`, images gone are forgotten.
    pub fn detect(
        &mut self,
        images: &[(String, u64)],
        in_use: &HashSet<String>,
        detected: Timestamp,
        now: Timestamp,
    ) {
        let current: HashSet<&str> = images.iter().map(|(id, _)| id.as_str()).collect();
        self.records.retain(|id, _| current.contains(id.as_str()));
        for (id, size) in images {
            let r = self.records.entry(id.clone()).or_insert(ImageRecord {
                first_detected: detected,
                last_used: None,
                size: *size,
            });
            r.size = *size;
            if in_use.contains(id) {
                r.last_used = Some(now);
            }
        }
    }

    /// The images that may go, in the order they go (upstream `freeSpace`'s eviction order
    /// and filters): not in use, not used at or after `now`, detected at least `min_age` ago.
    pub fn candidates(
        &self,
        in_use: &HashSet<String>,
        now: Timestamp,
        min_age: Duration,
    ) -> Vec<(String, u64)> {
        let min_age = SignedDuration::try_from(min_age).unwrap_or(SignedDuration::MAX);
        let mut v: Vec<(&String, &ImageRecord)> = self
            .records
            .iter()
            .filter(|(id, r)| {
                !in_use.contains(*id)
                    && r.last_used.is_none_or(|u| u < now)
                    && now.duration_since(r.first_detected) >= min_age
            })
            .collect();
        v.sort_by(|a, b| {
            a.1.last_used
                .cmp(&b.1.last_used)
                .then(a.1.first_detected.cmp(&b.1.first_detected))
        });
        v.into_iter().map(|(id, r)| (id.clone(), r.size)).collect()
    }
}

/// Why a collection could not be judged or did not free enough, in upstream's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageGcError {
    /// Event reason `InvalidDiskCapacity`.
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    /// Event reason `FreeDiskSpaceFailed`.
    #[error(
        "failed to garbage collect required amount of images. Wanted to free {wanted} bytes, but freed {freed} bytes"
    )]
    NotEnough { wanted: u64, freed: u64 },
    #[error(
        "wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {errors}"
    )]
    Deletion {
        wanted: u64,
        freed: u64,
        errors: String,
    },
}

/// Bytes to free to bring the image filesystem from above `high` percent used down to `low`
/// (upstream `GarbageCollect`); `None` when under `high`.
pub fn amount_to_free(
    capacity: u64,
    available: u64,
    high: u8,
    low: u8,
) -> Result<Option<u64>, ImageGcError> {
    if capacity == 0 {
        return Err(ImageGcError::InvalidCapacity);
    }
    let available = available.min(capacity);
    let (cap, avail) = (i128::from(capacity), i128::from(available));
    let usage = 100 - avail * 100 / cap;
    if usage < i128::from(high) {
        return Ok(None);
    }
    let want = cap * (100 - i128::from(low)) / 100 - avail;
    Ok(Some(u64::try_from(want.max(0)).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn least_recently_used_first_and_never_in_use_or_too_young() {
        let mut r = ImageRecords::default();
        let imgs = |ids: &[(&str, u64)]| -> Vec<(String, u64)> {
            ids.iter().map(|(i, s)| (i.to_string(), *s)).collect()
        };
        let used: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        r.detect(
            &imgs(&[("a", 10), ("b", 20), ("c", 30)]),
            &used,
            at(0),
            at(0),
        );
        let only_a: HashSet<String> = ["a".to_string()].into();
        r.detect(
            &imgs(&[("a", 10), ("b", 20), ("c", 30), ("d", 40)]),
            &only_a,
            at(100),
            at(100),
        );
        // d is too young at 110 with a minimum age of 60 s; a is in use.
        let c = r.candidates(&only_a, at(110), Duration::from_secs(60));
        assert_eq!(
            c,
            [("c".to_string(), 30), ("b".to_string(), 20)],
            "never used, then used longest ago"
        );
        let c = r.candidates(&only_a, at(200), Duration::from_secs(60));
        assert_eq!(
            c.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
            ["c", "d", "b"]
        );
        // Gone from the runtime: forgotten.
        r.detect(&imgs(&[("a", 10)]), &only_a, at(300), at(300));
        assert_eq!(r.records.len(), 1);
    }

    #[test]
    fn how_much_to_free() {
        assert_eq!(amount_to_free(100, 20, 85, 80), Ok(None));
        // 90% used: down to 80% used means 20 available.
        assert_eq!(amount_to_free(100, 10, 85, 80), Ok(Some(10)));
        assert_eq!(amount_to_free(100, 15, 85, 80), Ok(Some(5)));
        assert_eq!(
            amount_to_free(0, 0, 85, 80),
            Err(ImageGcError::InvalidCapacity)
        );
        assert_eq!(
            amount_to_free(100, 500, 85, 80),
            Ok(None),
            "available is capped at capacity"
        );
        assert_eq!(
            ImageGcError::NotEnough {
                wanted: 10,
                freed: 4
            }
            .to_string(),
            "failed to garbage collect required amount of images. Wanted to free 10 bytes, but freed 4 bytes"
        );
    }
}
