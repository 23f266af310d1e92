//! systemd's readiness protocol (`sd_notify(3)`): a datagram of `KEY=value` lines to the
//! socket named in `$NOTIFY_SOCKET`, so a `Type=notify` unit is active only once the kubelet
//! is. No library needed; a leading `@` names an abstract socket.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Sends `state` (e.g. "READY=1") to `$NOTIFY_SOCKET`; `Ok(false)` when not run by systemd.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) if !path.is_empty() => notify_to(Path::new(&path), state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notify socket at `path`.
pub fn notify_to(path: &Path, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_os_str().as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises; `None` when no watchdog is configured (or it is meant for another process).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| std::time::Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_state_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("krs-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        notify_to(&path, "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("krs-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(Path::new(&format!("@{name}")), "WATCHDOG=1").unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        // Nobody listening: an error, not a hang or a panic.
        assert!(notify_to(&dir.join("absent.sock"), "READY=1").is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
