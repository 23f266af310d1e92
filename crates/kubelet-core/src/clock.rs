//! Wall-clock time for API timestamps, injected so tests can fix it. Monotonic time
//! (back-off, periods, deadlines) uses `tokio::time::Instant`, which tests can pause.
//!
//! This is the one module allowed to read the wall clock (clippy.toml bans it elsewhere).

use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;

pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
    fn now_unix_ns(&self) -> i64 {
        self.now().as_nanosecond() as i64
    }
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to, for tests.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug)]
pub struct FakeClock {
    now: std::sync::Mutex<Timestamp>,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeClock {
    pub fn at(now: Timestamp) -> Arc<Self> {
        Arc::new(FakeClock {
            now: std::sync::Mutex::new(now),
        })
    }

    /// 2026-01-01T00:00:00Z.
    pub fn new() -> Arc<Self> {
        Self::at(Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let by = k8s_openapi::jiff::SignedDuration::try_from(by)
            .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
        let mut g = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.checked_add(by).unwrap_or(Timestamp::MAX);
    }

    /// The current fake time (without going through the trait object).
    pub fn now_ts(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, now: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(std::time::Duration::from_millis(1500));
        assert_eq!(c.now().duration_since(t0).as_millis(), 1500);
        assert_eq!(c.now_unix_ns(), t0.as_nanosecond() as i64 + 1_500_000_000);
    }
}
