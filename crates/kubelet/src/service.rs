//! Running as a systemd service: readiness and the watchdog (`sd_notify`).

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Under a `Type=notify` unit: READY=1 once the Node is registered and the first pod list
/// handed to the workers (pods can sync), then WATCHDOG=1 at half `WatchdogSec` while the
/// process lives. Returns only on shutdown, as every task here.
/// The longest READY=1 waits for registration and the pod sources.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) async fn notify_systemd(
    mut registered: watch::Receiver<bool>,
    mut listed: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    use kubelet_host::sd_notify;
    let ready = async {
        let _ = registered.wait_for(|r| *r).await;
        let _ = listed.wait_for(|l| *l).await;
    };
    // Upstream says READY at once; waiting for registration and the pod sources is better,
    // but a CSR awaiting approval or an unreachable staticPodURL must not let systemd's
    // start timeout kill the kubelet.
    tokio::select! {
        _ = cancel.cancelled() => return,
        () = ready => {}
        _ = tokio::time::sleep(READY_WAIT) => {
            warn!("not registered or pod sources not read after {READY_WAIT:?}; telling systemd READY anyway");
        }
    }
    match sd_notify::notify("READY=1") {
        Ok(true) => info!("told systemd the kubelet is ready"),
        Ok(false) => {}
        Err(e) => warn!(error = %e, "sd_notify READY=1 failed"),
    }
    let Some(period) = sd_notify::watchdog_interval() else {
        return cancel.cancelled().await;
    };
    let mut every = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = sd_notify::notify("WATCHDOG=1") {
                    warn!(error = %e, "sd_notify WATCHDOG=1 failed");
                }
            }
        }
    }
}
