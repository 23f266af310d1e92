//! systemd-logind for graceful node shutdown (upstream `nodeshutdown/systemd`): a delay
//! inhibitor lock holds a shutdown back while the kubelet ends its pods, `PrepareForShutdown`
//! says one has begun, and logind's `InhibitDelayMaxSec` bounds how long a lock may hold it.

use futures::{Stream, StreamExt};
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::OwnedFd;

#[zbus::proxy(
    interface = "org.freedesktop.login1.Manager",
    default_service = "org.freedesktop.login1",
    default_path = "/org/freedesktop/login1"
)]
trait Login {
    fn inhibit(&self, what: &str, who: &str, why: &str, mode: &str) -> zbus::Result<OwnedFd>;

    #[zbus(signal)]
    fn prepare_for_shutdown(&self, start: bool) -> zbus::Result<()>;

    #[zbus(property, name = "InhibitDelayMaxUSec")]
    fn inhibit_delay_max_usec(&self) -> zbus::Result<u64>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd {
    fn kill_unit(&self, name: &str, who: &str, signal: i32) -> zbus::Result<()>;
}

/// Where the kubelet raises logind's `InhibitDelayMaxSec` (upstream's file name).
pub const LOGIND_OVERRIDE: &str = "/etc/systemd/logind.conf.d/99-kubelet.conf";

#[derive(Debug, thiserror::Error)]
pub enum LogindError {
    #[error("connecting to the system bus: {0}")]
    Connect(Box<zbus::Error>),
    #[error("logind {op}: {source}")]
    Call {
        op: &'static str,
        source: Box<zbus::Error>,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "logind's InhibitDelayMaxSec is {current:?} after raising it to {wanted:?} (shutdownGracePeriod); pods would be cut short"
    )]
    DelayTooShort { wanted: Duration, current: Duration },
}

/// A held delay lock: closing it lets the shutdown go on.
#[derive(Debug)]
pub struct InhibitLock(#[allow(dead_code)] OwnedFd);

#[derive(Debug, Clone)]
pub struct Logind {
    conn: zbus::Connection,
}

impl Logind {
    pub async fn connect() -> Result<Self, LogindError> {
        Ok(Logind {
            conn: zbus::Connection::system()
                .await
                .map_err(|e| LogindError::Connect(Box::new(e)))?,
        })
    }

    async fn login(&self, op: &'static str) -> Result<LoginProxy<'_>, LogindError> {
        // The delay changes under us when logind reloads: never a cached value.
        LoginProxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(call(op))
    }

    /// How long logind lets a delay lock hold a shutdown back.
    pub async fn inhibit_delay_max(&self) -> Result<Duration, LogindError> {
        let op = "InhibitDelayMaxUSec";
        let us = self
            .login(op)
            .await?
            .inhibit_delay_max_usec()
            .await
            .map_err(call(op))?;
        Ok(Duration::from_micros(us))
    }

    /// Raises `InhibitDelayMaxSec` to `wanted` with a logind.conf drop-in and reloads logind
    /// (SIGHUP through systemd), as upstream does; an error if logind still says less.
    pub async fn ensure_inhibit_delay(&self, wanted: Duration) -> Result<(), LogindError> {
        if self.inhibit_delay_max().await? >= wanted {
            return Ok(());
        }
        write_override(Path::new(LOGIND_OVERRIDE), wanted)?;
        let op = "KillUnit systemd-logind.service SIGHUP";
        SystemdProxy::new(&self.conn)
            .await
            .map_err(call(op))?
            .kill_unit("systemd-logind.service", "all", 1)
            .await
            .map_err(call(op))?;
        // logind reloads asynchronously.
        let mut current = Duration::ZERO;
        for _ in 0..50 {
            current = self.inhibit_delay_max().await?;
            if current >= wanted {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LogindError::DelayTooShort { wanted, current })
    }

    /// Takes a delay lock on shutdown.
    pub async fn inhibit_shutdown(&self) -> Result<InhibitLock, LogindError> {
        let op = "Inhibit";
        let fd = self
            .login(op)
            .await?
            .inhibit(
                "shutdown",
                "kubelet",
                "Kubelet needs time to handle node shutdown",
                "delay",
            )
            .await
            .map_err(call(op))?;
        Ok(InhibitLock(fd))
    }

    /// `PrepareForShutdown`: `true` when a shutdown begins, `false` when it was cancelled.
    pub async fn shutdown_events(
        &self,
    ) -> Result<impl Stream<Item = bool> + Send + use<>, LogindError> {
        let op = "PrepareForShutdown";
        let proxy = LoginProxy::new(&self.conn).await.map_err(call(op))?;
        let signals = proxy
            .receive_prepare_for_shutdown()
            .await
            .map_err(call(op))?;
        Ok(signals.filter_map(|s| async move { s.args().ok().map(|a| a.start) }))
    }
}

fn call(op: &'static str) -> impl FnOnce(zbus::Error) -> LogindError {
    move |e| LogindError::Call {
        op,
        source: Box::new(e),
    }
}

/// logind's drop-in with the delay in whole seconds (upstream's text).
pub fn override_text(delay: Duration) -> String {
    format!(
        "# Kubelet logind override\n[Login]\nInhibitDelayMaxSec={}\n",
        delay.as_secs()
    )
}

fn write_override(path: &Path, delay: Duration) -> Result<(), LogindError> {
    let err = |source| LogindError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, override_text(delay)).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_raises_the_delay_in_seconds() {
        assert_eq!(
            override_text(Duration::from_secs(30)),
            "# Kubelet logind override\n[Login]\nInhibitDelayMaxSec=30\n"
        );
        let dir = std::env::temp_dir().join(format!("krs-logind-{}", std::process::id()));
        let path = dir.join("conf.d/99-kubelet.conf");
        write_override(&path, Duration::from_secs(20)).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .ends_with("InhibitDelayMaxSec=20\n")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
