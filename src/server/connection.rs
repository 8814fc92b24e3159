//! One client connection: read a frame, handle it, write the answer, in order.

use std::net::SocketAddr;

use tokio::io::BufWriter;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::broker::{Broker, Outcome};
use crate::logging;
use crate::protocol::frame::{read_frame, write_frame, FrameError};
use crate::protocol::header::{parse_request, RequestFrame};

pub struct Connection {
    reader: OwnedReadHalf,
    writer: BufWriter<OwnedWriteHalf>,
    peer: SocketAddr,
    broker: Broker,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, broker: Broker, shutdown: watch::Receiver<bool>) -> Self {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Connection { reader, writer: BufWriter::new(writer), peer, broker, shutdown }
    }

    pub async fn run(mut self) {
        if self.broker.config.log_connections {
            logging::log(format!("pg_kafka: connection from {}", self.peer));
        }
        let reason = self.serve().await;
        match reason {
            Ok(()) if self.broker.config.log_connections => {
                logging::log(format!("pg_kafka: {} disconnected", self.peer))
            }
            Ok(()) => {}
            Err(reason) => logging::warning(format!("pg_kafka: closing connection from {}: {reason}", self.peer)),
        }
    }

    /// Serves requests until the client leaves (`Ok`) or must be dropped (`Err(reason)`).
    async fn serve(&mut self) -> Result<(), String> {
        let max_frame_bytes = self.broker.config.max_frame_bytes;
        loop {
            let frame = tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Ok(()),
                frame = read_frame(&mut self.reader, max_frame_bytes) => frame,
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            let request = parse_request(frame).map_err(|e| e.to_string())?;
            match handle_guarded(&self.broker, request).await {
                Outcome::Respond(response) => {
                    write_frame(&mut self.writer, &response).await.map_err(|e| e.to_string())?
                }
                Outcome::Silent => {}
                Outcome::Close(reason) => return Err(reason),
            }
        }
    }
}

/// Runs the handler in its own task so that a panic costs only this connection.
async fn handle_guarded(broker: &Broker, request: RequestFrame) -> Outcome {
    let (api_key, version) = (request.api_key, request.version());
    let broker = broker.clone();
    match tokio::spawn(async move { broker.handle(request).await }).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Close(format!("{api_key:?} v{version} handler failed: {}", panic_message(e))),
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}
