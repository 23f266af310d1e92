//! `/healthz` on `healthzBindAddress:healthzPort` (10248), plain HTTP as upstream serves it.
//! A minimal server on purpose: one bounded request line, one short answer.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub type Check = Arc<dyn Fn() -> Result<(), crate::server::PlegFailed> + Send + Sync>;

pub fn respond(request: &[u8], check: &Check) -> String {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/healthz") => match check() {
            Ok(()) => ("200 OK", "ok".to_string()),
            Err(e) => (
                "500 Internal Server Error",
                format!("[-]{e}\nhealthz check failed"),
            ),
        },
        ("GET" | "HEAD", _) => ("404 Not Found", "404 page not found".to_string()),
        _ => ("405 Method Not Allowed", "method not allowed".to_string()),
    };
    format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

pub async fn serve(listener: TcpListener, check: Check, cancel: CancellationToken) {
    let open =
        kubelet_server::listener::Connections::new(kubelet_server::listener::MAX_SMALL_CONNECTIONS);
    // The connections, owned here: they end with the server.
    let mut conns = tokio::task::JoinSet::new();
    while let Some((mut sock, _, slot)) =
        kubelet_server::listener::accept(&listener, &open, &cancel).await
    {
        while conns.try_join_next().is_some() {}
        let check = check.clone();
        conns.spawn(async move {
            let mut buf = vec![0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf));
            let n = tokio::select! {
                r = read => match r {
                    Ok(Ok(n)) => n,
                    _ => return,
                },
                // Displaced by a newer connection while still idle.
                _ = slot.cancel.cancelled() => return,
            };
            slot.mark_active();
            let resp = respond(&buf[..n], &check);
            if let Err(e) = sock.write_all(resp.as_bytes()).await {
                warn!(error = %e, "healthz write failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let ok: Check = Arc::new(|| Ok(()));
        let bad: Check = Arc::new(|| {
            Err(crate::server::PlegFailed(kubelet_pod::pleg::PlegUnhealthy(
                std::time::Duration::from_secs(200),
            )))
        });
        assert!(respond(b"GET /healthz HTTP/1.1\r\n", &ok).starts_with("HTTP/1.1 200 OK"));
        let r = respond(b"GET /healthz HTTP/1.1\r\n", &bad);
        assert!(r.starts_with("HTTP/1.1 500") && r.contains("PLEG is not healthy"));
        assert!(respond(b"GET /../etc HTTP/1.1\r\n", &ok).starts_with("HTTP/1.1 404"));
        assert!(respond(b"\xff\xfe", &ok).starts_with("HTTP/1.1 405"));
    }
}
