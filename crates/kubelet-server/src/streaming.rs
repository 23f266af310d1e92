//! `/exec`, `/attach` and `/portForward` (upstream `server.go` getExec, getAttach,
//! getPortForward and proxyStream): the runtime hands out a URL on its streaming server, and
//! the client's upgraded connection (SPDY or WebSocket) is spliced to it byte for byte, so
//! the kubelet never needs to speak either protocol.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Upstream's query parameters (`api.ExecStdinParam` and friends): "1" turns a stream on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter().any(|(n, v)| n == k && v == "1")
}

/// A streaming request upstream refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRequestError {
    #[error("you must specify at least 1 of stdin, stdout, stderr")]
    NoStreams,
    #[error("invalid port {0:?}")]
    InvalidPort(String),
}

/// Upstream `remotecommand.NewOptions`: tty drops stderr; at least one stream is required.
pub fn stream_options(q: &[(String, String)]) -> Result<StreamOptions, StreamRequestError> {
    let tty = flag(q, "tty");
    let o = StreamOptions {
        stdin: flag(q, "input"),
        stdout: flag(q, "output"),
        stderr: flag(q, "error") && !tty,
        tty,
    };
    if !o.stdin && !o.stdout && !o.stderr {
        return Err(StreamRequestError::NoStreams);
    }
    Ok(o)
}

/// The `command` parameters, in order.
pub fn command(q: &[(String, String)]) -> Vec<String> {
    q.iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The `port` parameters (WebSocket port-forward names them; SPDY sends them per stream).
pub fn ports(q: &[(String, String)]) -> Result<Vec<i32>, StreamRequestError> {
    q.iter()
        .filter(|(k, _)| k == "port" || k == "ports")
        .flat_map(|(_, v)| v.split(','))
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(i32::from)
                .ok_or_else(|| StreamRequestError::InvalidPort(p.to_string()))
        })
        .collect()
}

pub fn is_upgrade(req: &Request) -> bool {
    req.headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        && req.headers().contains_key(header::UPGRADE)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

/// Headers not passed to the runtime: its streaming server needs no credentials of ours.
const DROPPED: [HeaderName; 4] = [
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];
/// The most a runtime's response head may take.
const MAX_HEAD: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Proxies the upgrade request to `url` and, once the runtime switches protocols, splices the
/// two connections until either side closes or the server stops.
pub async fn proxy(
    mut req: Request,
    url: &str,
    cancel: CancellationToken,
    idle: Duration,
) -> Response {
    let Ok(uri) = url.parse::<axum::http::Uri>() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("invalid streaming URL {url:?}"),
        );
    };
    if uri.scheme_str() != Some("http") {
        // containerd serves plain HTTP on loopback unless TLS streaming is turned on.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unsupported streaming URL scheme in {url:?}"),
        );
    }
    let Some(host) = uri.host().map(str::to_string) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "streaming URL without host",
        );
    };
    let port = uri.port_u16().unwrap_or(80);
    let mut backend = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("error dialing backend: {e}"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "error dialing backend: timed out",
            );
        }
    };
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n",
        req.method()
    );
    for (k, v) in req.headers() {
        if DROPPED.contains(k) {
            continue;
        }
        if let Ok(v) = v.to_str() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    if let Err(e) = backend.write_all(head.as_bytes()).await {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error proxying to the runtime: {e}"),
        );
    }
    // The runtime's answer: its head, and whatever came after it in the same reads.
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return error(StatusCode::BAD_GATEWAY, "runtime response head too large");
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(CONNECT_TIMEOUT, backend.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                return error(StatusCode::BAD_GATEWAY, "runtime closed the stream");
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    if !matches!(parsed.parse(&buf[..end]), Ok(httparse::Status::Complete(_))) {
        return error(StatusCode::BAD_GATEWAY, "malformed runtime response");
    }
    let code = parsed.code.unwrap_or(502);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = Response::builder().status(status);
    for h in parsed.headers.iter() {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) {
            resp = resp.header(k, v);
        }
    }
    let rest = buf[end..].to_vec();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // A refusal (say, a protocol version the runtime lacks): pass it on, so clients
        // can fall back (kubectl tries WebSocket, then SPDY).
        let mut body = rest;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            (&mut backend).take(MAX_HEAD as u64).read_to_end(&mut body),
        )
        .await;
        let resp = resp.header(header::CONTENT_LENGTH, body.len());
        return resp
            .body(Body::from(body))
            .unwrap_or_else(|_| error(StatusCode::BAD_GATEWAY, "bad runtime response"));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(error = %e, "client upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(upgraded);
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        tokio::select! {
            r = splice(client, backend, idle) => {
                debug!(result = ?r, "stream closed");
            }
            _ = cancel.cancelled() => {}
        }
    });
    resp.body(Body::empty())
        .unwrap_or_else(|_| error(StatusCode::BAD_GATEWAY, "bad runtime response"))
}

/// Copies both ways until both sides have finished, or until nothing has moved either way
/// for `idle` (`streamingConnectionIdleTimeout`).
pub async fn splice<A, B>(a: A, b: B, idle: Duration) -> std::io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            n = ar.read(&mut abuf), if a_open => match n? {
                0 => {
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
                n => bw.write_all(&abuf[..n]).await?,
            },
            n = br.read(&mut bbuf), if b_open => match n? {
                0 => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
                n => aw.write_all(&bbuf[..n]).await?,
            },
            _ = tokio::time::sleep(idle) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "stream idle for longer than streamingConnectionIdleTimeout",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn options_as_upstream() {
        let o = stream_options(&q(&[
            ("input", "1"),
            ("output", "1"),
            ("tty", "1"),
            ("error", "1"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        assert_eq!(
            stream_options(&q(&[("output", "true")]))
                .unwrap_err()
                .to_string(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert_eq!(
            command(&q(&[("command", "sh"), ("output", "1"), ("command", "-c")])),
            vec!["sh", "-c"]
        );
        assert_eq!(
            ports(&q(&[("port", "80"), ("ports", "81,82")])),
            Ok(vec![80, 81, 82])
        );
        assert!(ports(&q(&[("port", "0")])).is_err());
        assert!(ports(&q(&[("port", "x")])).is_err());
    }

    /// A stream with traffic stays up; one with none for the idle timeout is closed.
    #[tokio::test(start_paused = true)]
    async fn idle_streams_are_closed() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (backend, mut backend_peer) = tokio::io::duplex(1024);
        let idle = Duration::from_secs(60);
        let task = tokio::spawn(splice(client, backend, idle));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(50)).await;
            client_peer.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            backend_peer.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
        }
        assert!(
            !task.is_finished(),
            "active for 250 s with no gap over 60 s"
        );
        tokio::time::sleep(Duration::from_secs(61)).await;
        let r = task.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        // The peers see the streams end.
        let mut rest = vec![];
        assert_eq!(client_peer.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
