//! Length-prefixed frames: `i32 size` then `size` bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read from the socket per step. A frame grows by at most this much beyond what
/// the client has really sent, however large a size it announces.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} (pg_kafka.max_frame_bytes; 512 KiB before SASL authentication)")]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("a frame of {size} bytes did not arrive within pg_kafka.request_timeout_ms ({timeout_ms} ms)")]
    TimedOut { size: usize, timeout_ms: u64 },
    #[error("the in-flight byte budget was closed")]
    BudgetClosed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads a frame's size prefix and checks it, so the caller can reserve memory for the
/// body before reading it. `Ok(None)` is a clean end of stream.
pub async fn read_frame_size<R: AsyncRead + Unpin>(reader: &mut R, max_frame_bytes: usize) -> Result<Option<usize>, FrameError> {
    let mut size_bytes = [0u8; 4];
    match reader.read_exact(&mut size_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    frame_size(i32::from_be_bytes(size_bytes), max_frame_bytes).map(Some)
}

fn frame_size(announced: i32, max_frame_bytes: usize) -> Result<usize, FrameError> {
    let size = usize::try_from(announced).map_err(|_| FrameError::NegativeSize(announced))?;
    if size > max_frame_bytes {
        return Err(FrameError::TooLarge { size, max: max_frame_bytes });
    }
    Ok(size)
}

/// Reads exactly `size` bytes, growing the buffer only as bytes arrive.
pub async fn read_frame_body<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> Result<Bytes, FrameError> {
    let mut body = FrameBody::new(size);
    while let Some(step) = body.next_step() {
        body.read_step(reader, step).await?;
    }
    Ok(body.finish())
}

/// A frame body being read in steps of at most 64 KiB, so that a caller can account for
/// what each step read: memory follows what the client really sends, never what a size
/// prefix merely announces.
pub struct FrameBody {
    size: usize,
    bytes: BytesMut,
}

impl FrameBody {
    pub fn new(size: usize) -> FrameBody {
        FrameBody { size, bytes: BytesMut::with_capacity(size.min(READ_CHUNK)) }
    }

    /// How many bytes the next step reads, `None` once the body is complete.
    pub fn next_step(&self) -> Option<usize> {
        (self.bytes.len() < self.size).then(|| (self.size - self.bytes.len()).min(READ_CHUNK))
    }

    /// Reads up to `step` more bytes, what has arrived (at least one); returns how many.
    pub async fn read_step<R: AsyncRead + Unpin>(&mut self, reader: &mut R, step: usize) -> Result<usize, FrameError> {
        self.bytes.reserve(step);
        let read = reader.take(step as u64).read_buf(&mut self.bytes).await?;
        if read == 0 {
            return Err(FrameError::Truncated);
        }
        Ok(read)
    }

    pub fn finish(self) -> Bytes {
        self.bytes.freeze()
    }
}

/// Writes a frame already prefixed with its size (see `header::encode_response`), given in
/// parts that back to back are the frame, and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, parts: &[Bytes]) -> std::io::Result<()> {
    for part in parts {
        writer.write_all(part).await?;
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One whole frame: the two reads the connection makes, without the budget reservation
    /// it makes between them.
    async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max_frame_bytes: usize) -> Result<Option<Bytes>, FrameError> {
        match read_frame_size(reader, max_frame_bytes).await? {
            Some(size) => read_frame_body(reader, size).await.map(Some),
            None => Ok(None),
        }
    }

    #[tokio::test]
    async fn reads_frames_back_to_back_then_clean_eof() {
        let mut input: &[u8] = &[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0];
        assert_eq!(read_frame(&mut input, 1024).await.unwrap().unwrap(), Bytes::from_static(b"hi"));
        assert_eq!(read_frame(&mut input, 1024).await.unwrap().unwrap(), Bytes::new());
        assert!(read_frame(&mut input, 1024).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_oversized_and_negative_sizes_without_reading() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut input, 1024).await, Err(FrameError::TooLarge { .. })));
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(read_frame(&mut input, 1024).await, Err(FrameError::NegativeSize(-2))));
    }

    #[tokio::test]
    async fn announced_size_is_not_allocated_up_front() {
        // 50 MB announced, 3 bytes sent: the read fails as truncated, having held 3 bytes.
        let mut input: &[u8] = &[0x02, 0xfa, 0xf0, 0x80, 1, 2, 3];
        assert!(matches!(read_frame(&mut input, 100 << 20).await, Err(FrameError::Truncated)));
    }
}
