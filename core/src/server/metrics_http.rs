//! The Prometheus endpoint (`pg_kafka.metrics_listener`, off by default): `GET /metrics`
//! answers the figures of `kafka.broker_stats` in Prometheus's text format.
//!
//! Just enough HTTP/1.1 for a scraper, and bounded like the Kafka listeners: at most
//! [`MAX_CONNECTIONS`] at once, a request head of at most [`MAX_HEAD_BYTES`] read within
//! [`HEAD_TIMEOUT`], the answer written within [`TIMEOUT`], then the connection closes.
//! A scraper sends its head at once and reads its answer in milliseconds: when the slots
//! are full, the connection that has waited longest is dropped for the new one, so idle
//! sockets can never keep a scrape out.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::figures::Figures;
use crate::logging;
use crate::metrics::prometheus_text;

pub const MAX_CONNECTIONS: usize = 8;
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds `address` (`host:port`), or says why not.
pub fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    let socket = std::net::TcpListener::bind(address)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Serves scrapes until shutdown.
pub async fn serve(socket: std::net::TcpListener, figures: Figures, mut shutdown: watch::Receiver<bool>) {
    let listener = match TcpListener::from_std(socket) {
        Ok(listener) => listener,
        Err(e) => return logging::warning(format!("pg_kafka: cannot use the metrics listener: {e}")),
    };
    // Connections being served, oldest first.
    let mut serving: VecDeque<tokio::task::AbortHandle> = VecDeque::with_capacity(MAX_CONNECTIONS);
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        serving.retain(|task| !task.is_finished());
        if serving.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = serving.pop_front() {
                oldest.abort();
            }
        }
        let figures = figures.clone();
        let task = tokio::spawn(async move {
            let _ = tokio::time::timeout(TIMEOUT, answer(stream, &figures)).await;
        });
        serving.push_back(task.abort_handle());
    }
}

async fn answer(mut stream: TcpStream, figures: &Figures) -> std::io::Result<()> {
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request head in time"))??;
    let response = match request_target(&head) {
        Some("/metrics") | Some("/") => {
            let body = prometheus_text(&figures.broker(), &figures.cleaner());
            http_response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
        }
        Some(_) => http_response("404 Not Found", "text/plain", "not found: try /metrics\n"),
        None => http_response("400 Bad Request", "text/plain", "bad request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head, up to the blank line (or [`MAX_HEAD_BYTES`], or the client's end).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read.min(MAX_HEAD_BYTES - head.len())]);
    }
    Ok(head)
}

/// The path of a `GET` (or `HEAD`) request line, without its query.
fn request_target(head: &[u8]) -> Option<&str> {
    let line = std::str::from_utf8(head.split(|&b| b == b'\r' || b == b'\n').next()?).ok()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    matches!(method, "GET" | "HEAD").then(|| target.split('?').next().unwrap_or(target))
}

fn http_response(status: &str, content_type: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_read_strictly() {
        assert_eq!(request_target(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some("/metrics"));
        assert_eq!(request_target(b"GET /metrics?name=x HTTP/1.0\r\n\r\n"), Some("/metrics"));
        assert_eq!(request_target(b"POST /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(request_target(b"\xff\xfe"), None);
        assert_eq!(request_target(b""), None);
    }

    #[tokio::test]
    async fn serves_the_figures_and_refuses_the_rest() {
        let broker = crate::broker::testing::broker();
        broker.metrics().request(kafka_protocol::messages::ApiKey::Metadata, Duration::from_millis(3), false);
        let socket = bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(serve(socket, broker.figures(), shutdown));
        let get = |request: &'static [u8]| async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let metrics = get(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("pg_kafka_requests_total{api=\"Metadata\"} 1\n"), "{metrics}");
        assert!(metrics.contains("# TYPE pg_kafka_connections gauge\n"), "{metrics}");
        assert!(get(b"GET /other HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(b"DELETE / HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 400"));
        // A head that never ends is cut at the limit and still answered.
        let mut endless = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        endless.extend(std::iter::repeat_n(b'a', 3 * MAX_HEAD_BYTES));
        let mut stream = TcpStream::connect(address).await.unwrap();
        let _ = stream.write_all(&endless).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        assert!(response.starts_with(b"HTTP/1.1 200 OK"));

        // Idle sockets filling every slot (and more) do not keep a scrape out.
        let mut idle = Vec::new();
        for _ in 0..3 * MAX_CONNECTIONS {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        let scrape = tokio::time::timeout(Duration::from_millis(900), get(b"GET /metrics HTTP/1.1\r\n\r\n")).await;
        assert!(scrape.expect("answered while idle sockets hang").starts_with("HTTP/1.1 200 OK"));
        // And they are closed within the head timeout.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(HEAD_TIMEOUT * 3, idle.last_mut().unwrap().read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "an idle scrape socket was kept open");
    }
}
