//! Per-key exponential back-off, with upstream's `flowcontrol.Backoff` semantics: the delay
//! doubles from `initial` to `max`, and an entry is forgotten once `2 * max` has passed
//! since it was last bumped (so a container that ran for 10 minutes starts again at 10 s).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;
use tokio::time::Instant;

use crate::labels::PodRef;

#[derive(Debug, Clone)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

#[derive(Debug, Clone)]
pub struct Backoff<K> {
    initial: Duration,
    max: Duration,
    entries: HashMap<K, Entry>,
}

/// CrashLoopBackOff: 10 s doubling to 5 min.
pub const CRASH_LOOP_INITIAL: Duration = Duration::from_secs(10);
pub const CRASH_LOOP_MAX: Duration = Duration::from_secs(300);

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    pub fn crash_loop() -> Self {
        Self::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX)
    }

    fn expired(&self, e: &Entry, event_time: Instant) -> bool {
        event_time.saturating_duration_since(e.last_update) > self.max * 2
    }

    /// Records one more failure observed at `event_time`, at `now`.
    pub fn next(&mut self, key: &K, event_time: Instant, now: Instant) {
        let expired = self
            .entries
            .get(key)
            .is_none_or(|e| self.expired(e, event_time));
        let max = self.max;
        let initial = self.initial;
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            backoff: initial,
            last_update: now,
        });
        e.backoff = if expired {
            initial
        } else {
            (e.backoff * 2).min(max)
        };
        e.last_update = now;
    }

    /// Whether a retry after a failure at `event_time` must still wait; returns the
    /// current back-off delay and how long is left.
    pub fn in_backoff_since(
        &self,
        key: &K,
        event_time: Instant,
        now: Instant,
    ) -> Option<(Duration, Duration)> {
        let e = self.entries.get(key)?;
        if self.expired(e, event_time) {
            return None;
        }
        let since = now.saturating_duration_since(event_time);
        (since < e.backoff).then(|| (e.backoff, e.backoff - since))
    }

    /// Whether `now` is still within the delay since the entry was last bumped (image pulls).
    pub fn in_backoff_since_update(&self, key: &K, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| now.saturating_duration_since(e.last_update) < e.backoff)
    }

    pub fn current(&self, key: &K) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Forgets entries not bumped for `2 * max`, to bound memory.
    pub fn gc(&mut self, now: Instant) {
        let max = self.max;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= max * 2);
    }

    pub fn remove_matching(&mut self, f: impl Fn(&K) -> bool) {
        self.entries.retain(|k, _| !f(k));
    }
}

/// The crash-loop key, one entry per container definition: a changed spec (another hash)
/// starts over, as upstream's `getStableKey`.
pub fn crash_loop_key(pod: &PodRef, container: &str, hash: u64) -> String {
    format!(
        "{}_{}_{}_{}_{:x}",
        pod.name, pod.namespace, pod.uid, container, hash
    )
}

/// The CrashLoopBackOff waiting message.
pub fn crash_loop_message(delay: Duration, container: &str, pod: &PodRef) -> String {
    format!(
        "back-off {} restarting failed container={} pod={}_{}({})",
        go_duration(delay),
        container,
        pod.name,
        pod.namespace,
        pod.uid
    )
}

impl Backoff<String> {
    /// Whether a container that exited at `finished` may start again now. If it must wait,
    /// returns the delay and what is left; else counts this restart and returns `None`.
    pub fn restart_gate(
        &mut self,
        key: &String,
        finished: Instant,
        now: Instant,
    ) -> Option<(Duration, Duration)> {
        if let Some(wait) = self.in_backoff_since(key, finished, now) {
            return Some(wait);
        }
        self.next(key, finished, now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn doubles_and_caps_then_resets() {
        let mut b = Backoff::crash_loop();
        let k = "c";
        let mut seen = vec![];
        for _ in 0..8 {
            let t = Instant::now();
            b.next(&k, t, t);
            seen.push(b.current(&k).unwrap().as_secs());
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        let t = Instant::now();
        assert!(b.in_backoff_since(&k, t, t).is_some());
        tokio::time::advance(Duration::from_secs(301)).await;
        assert!(b.in_backoff_since(&k, t, Instant::now()).is_none());
        // ran for more than 10 minutes: the next failure starts over at 10 s
        tokio::time::advance(Duration::from_secs(601)).await;
        let t = Instant::now();
        b.next(&k, t, t);
        assert_eq!(b.current(&k), Some(Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn restart_gate_waits_then_counts() {
        let r = PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
        };
        let mut b = Backoff::crash_loop();
        let k = crash_loop_key(&r, "c", 0xab);
        assert_eq!(k, "p_ns_u_c_ab");
        let t0 = Instant::now();
        assert_eq!(
            b.restart_gate(&k, t0, t0),
            None,
            "the first restart is free"
        );
        assert_eq!(
            b.restart_gate(&k, t0, t0 + Duration::from_secs(3)),
            Some((Duration::from_secs(10), Duration::from_secs(7)))
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.restart_gate(&k, t1, t1 + Duration::from_secs(10)), None);
        assert_eq!(b.current(&k), Some(Duration::from_secs(20)));
        let other = crash_loop_key(&r, "c", 0xac);
        assert_eq!(
            b.restart_gate(&other, t1, t1),
            None,
            "a new spec starts over"
        );
        assert_eq!(
            crash_loop_message(Duration::from_secs(20), "c", &r),
            "back-off 20s restarting failed container=c pod=p_ns(u)"
        );
    }

    proptest::proptest! {
        /// However failures are spaced, the delay is `initial * 2^k` and never above `max`.
        #[test]
        fn delay_is_a_capped_power_of_two(gaps in proptest::collection::vec(0u64..2000, 1..20)) {
            let mut b = Backoff::crash_loop();
            let mut t = Instant::now();
            for g in gaps {
                t += Duration::from_secs(g);
                b.next(&"k", t, t);
                let d = b.current(&"k").unwrap_or_default();
                proptest::prop_assert!(d <= CRASH_LOOP_MAX);
                let ratio = d.as_secs() / CRASH_LOOP_INITIAL.as_secs();
                proptest::prop_assert!(d == CRASH_LOOP_MAX || (ratio.is_power_of_two() && d.as_secs() % 10 == 0));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_time() {
        let mut b = Backoff::crash_loop();
        let t0 = Instant::now();
        b.next(&"x", t0, t0);
        tokio::time::advance(Duration::from_secs(4)).await;
        let (d, left) = b.in_backoff_since(&"x", t0, Instant::now()).unwrap();
        assert_eq!(d, Duration::from_secs(10));
        assert_eq!(left, Duration::from_secs(6));
        assert!(b.in_backoff_since_update(&"x", Instant::now()));
        assert!(!b.in_backoff_since_update(&"x", Instant::now() + Duration::from_secs(7)));
        b.gc(Instant::now() + Duration::from_secs(601));
        assert!(b.current(&"x").is_none());
    }
}

/// Formats like Go's `time.Duration.String` for whole seconds: "10s", "1m20s", "5m0s", "1h0m0s".
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod fmt_tests {
    use super::*;

    #[test]
    fn go_style() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
