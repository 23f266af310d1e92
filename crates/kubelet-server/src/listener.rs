//! Accepting connections with bounds: at most `max` open at once, where a new connection at
//! the cap displaces the oldest one that has not yet sent a request (so a flood of idle
//! connections cannot lock clients out); accept errors such as EMFILE back off instead of
//! spinning (as Go's http.Server); TCP keepalive on every connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Connections the kubelet API (10250) keeps open at most.
pub const MAX_API_CONNECTIONS: usize = 1024;
/// Connections the read-only port and the healthz port keep open at most.
pub const MAX_SMALL_CONNECTIONS: usize = 128;
/// TCP keepalive: a peer that vanished is noticed within minutes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct Entry {
    /// Cancels the connection's task.
    cancel: CancellationToken,
    /// Set once the connection has sent a request: it is then no longer displaced.
    active: Arc<AtomicBool>,
}

/// The open connections of one listener.
#[derive(Debug, Clone)]
pub struct Connections {
    max: usize,
    next: Arc<AtomicU64>,
    open: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

/// One open connection: dropping it frees its place.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    open: Arc<Mutex<BTreeMap<u64, Entry>>>,
    /// Cancelled when the connection is displaced or the server stops.
    pub cancel: CancellationToken,
    active: Arc<AtomicBool>,
}

impl Slot {
    /// The connection has sent a request: keep it.
    pub fn mark_active(&self) {
        self.active.store(true, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Connections {
    pub fn new(max: usize) -> Self {
        Connections {
            max: max.max(1),
            next: Arc::default(),
            open: Arc::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A place for a new connection, displacing the oldest idle one at the cap; `None` when
    /// every open connection is busy with a request.
    pub fn admit(&self, parent: &CancellationToken) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= self.max {
            let idle = open
                .iter()
                .find(|(_, e)| !e.active.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(e) = open.remove(&idle) {
                e.cancel.cancel();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = parent.child_token();
        let active = Arc::new(AtomicBool::new(false));
        open.insert(
            id,
            Entry {
                cancel: cancel.clone(),
                active: active.clone(),
            },
        );
        Some(Slot {
            id,
            open: self.open.clone(),
            cancel,
            active,
        })
    }
}

/// The next connection with its place, or `None` once `cancel` fires. Accept errors back
/// off from 5 ms up to 1 s; a connection with no place (all busy) is closed at once.
pub async fn accept(
    listener: &TcpListener,
    conns: &Connections,
    cancel: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, Slot)> {
    let mut delay = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return None,
            c = listener.accept() => c,
        };
        let (tcp, remote) = match accepted {
            Ok(c) => c,
            Err(e) => {
                delay = (delay * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                warn!(error = %e, retry_in = ?delay, "accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        delay = Duration::ZERO;
        let Some(slot) = conns.admit(cancel) else {
            debug!(%remote, "connection refused: every connection is busy");
            continue;
        };
        let ka = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL);
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&ka) {
            debug!(%remote, error = %e, "setting TCP keepalive failed");
        }
        return Some((tcp, remote, slot));
    }
}

/// Raises the soft limit on open files to the hard limit, as Go does at start, so the caps
/// above are what bounds connections, not EMFILE.
pub fn raise_nofile_limit() -> Option<u64> {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = lim.maximum?;
    if lim.current.is_some_and(|c| c >= hard) {
        return Some(hard);
    }
    let raised = rustix::process::Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).ok()?;
    Some(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let conns = Connections::new(3);
        let root = CancellationToken::new();
        let a = conns.admit(&root).unwrap();
        let b = conns.admit(&root).unwrap();
        let c = conns.admit(&root).unwrap();
        a.mark_active();
        // At the cap: b, the oldest idle one, goes.
        let d = conns.admit(&root).unwrap();
        assert!(b.cancel.is_cancelled() && !a.cancel.is_cancelled());
        assert_eq!(conns.len(), 3);
        drop(b);
        assert_eq!(conns.len(), 3, "b's place was already taken by d");
        c.mark_active();
        d.mark_active();
        // Everything busy: no place.
        assert!(conns.admit(&root).is_none());
        drop(a);
        assert!(conns.admit(&root).is_some());
    }
}
