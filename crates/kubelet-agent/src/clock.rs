//! Wall-clock time for API timestamps, injected so tests can fix it. Monotonic time
//! (back-off, periods, deadlines) uses `tokio::time::Instant`, which tests can pause.

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
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;
