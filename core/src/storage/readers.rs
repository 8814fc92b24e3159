//! Reader processes: Fetch's reads and retention's deletes beside the group commit, on
//! other cores.
//!
//! The worker's main thread is the only thread of its process that may call Postgres, and
//! it spends most of a busy second in the group commit's COPY. A Fetch queued behind it
//! waited for the whole commit, so a consumer replaying a partition got one response per
//! commit while producers wrote. Reader processes are background workers with Postgres
//! sessions of their own (started by the worker, `pg_kafka.readers` of them); each
//! connects to the worker's Unix socket and then runs one job at a time in its own
//! transaction: a [`ReaderJob`], framed
//! as `[u32 length][u8 kind][job]` (a Fetch's `ReadPlan`, a retention pass).
//!
//! ```text
//!  Fetch handler ─ Readers::run(plan) ─ idle reader? ─ yes ─▶ [u32 len][plan] ─▶ reader process
//!        ▲                                         │                       (index walk, own snapshot)
//!        └──── records ◀── [u32 len][answer] ◀─────┼─────────────────────────────┘
//!                                                  └─ no reader connected / one failed:
//!                                                     the main thread runs the plan (as before)
//! ```
//! A reader sees what is committed, like the main thread's own read, and Fetch never
//! reads past the high watermark the writer publishes after its commit.
//!
//! The socket is an abstract one (a name starting with `@`, Linux): nothing in the file
//! system. It used to be a file in the data directory, which `pg_basebackup` skips with a
//! warning and on which `pg_rewind` fails, leaving a half-rewound data directory: a
//! primary that failed over could not rejoin as a standby. An abstract socket has no file
//! permissions, so the worker accepts only a peer running as its own OS user (the one
//! that owns the data directory, as the file's permissions required before). Tests use
//! socket files.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{watch, Semaphore};

use super::reads::WireError;
use super::StorageError;
use crate::logging;

/// What a reader process can be asked to run, and how it travels over the socket.
pub trait ReaderJob {
    /// What the job answers.
    type Answer;
    /// The byte that tells the reader which job follows.
    const KIND: u8;
    /// The job's bytes, after the kind.
    fn encode(&self) -> Vec<u8>;
    /// The answer a reader sent: the job's result or its error.
    fn decode_answer(bytes: Bytes) -> Result<Result<Self::Answer, StorageError>, WireError>;
}

/// How often idle readers are checked for a process that went away.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The readers that are connected and not busy.
pub struct Readers {
    idle: parking_lot::Mutex<Vec<UnixStream>>,
    /// One permit per idle reader.
    available: Arc<Semaphore>,
    connected: AtomicUsize,
    /// The network runtime, once it accepts readers: where the main thread hands jobs.
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
}

/// Binds the reader socket `name`: an abstract socket when it starts with `@`, else a
/// socket file, replacing a stale one a crashed worker left.
pub fn bind(name: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    let listener = match name.strip_prefix('@') {
        Some(abstract_name) => std::os::unix::net::UnixListener::bind_addr(&abstract_address(abstract_name)?)?,
        None => {
            match std::fs::remove_file(name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::os::unix::net::UnixListener::bind(name)?
        }
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A reader's connection to the socket [`bind`] made under `name`.
pub fn connect(name: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    match name.strip_prefix('@') {
        Some(abstract_name) => std::os::unix::net::UnixStream::connect_addr(&abstract_address(abstract_name)?),
        None => std::os::unix::net::UnixStream::connect(name),
    }
}

fn abstract_address(name: &str) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

/// Whether a connected peer may be a reader: it runs as this process's OS user.
fn is_own_user(stream: &UnixStream) -> bool {
    stream.peer_cred().is_ok_and(|peer| peer.uid() == nix::unistd::geteuid().as_raw())
}

impl Default for Readers {
    fn default() -> Readers {
        Readers {
            idle: parking_lot::Mutex::default(),
            available: Arc::new(Semaphore::new(0)),
            connected: AtomicUsize::new(0),
            runtime: std::sync::OnceLock::new(),
        }
    }
}

impl Readers {
    /// How many readers are connected now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many connected readers are free for a job now.
    pub fn idle(&self) -> usize {
        self.available.available_permits()
    }

    /// The runtime that talks to readers, for a thread outside it (the main thread) that
    /// hands a job over; `None` before readers are accepted.
    pub fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.get()
    }

    /// Accepts reader connections until shutdown.
    pub async fn accept(self: Arc<Self>, listener: std::os::unix::net::UnixListener, mut shutdown: watch::Receiver<bool>) {
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let listener = match tokio::net::UnixListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => return logging::warning(format!("pg_kafka: reader socket unusable, reads stay on the main thread: {e}")),
        };
        let mut pruning = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if is_own_user(&stream) => self.add(stream),
                    Ok((stream, _)) => logging::warning(format!(
                        "pg_kafka: refused a connection to the reader socket from a process of another OS user ({:?})",
                        stream.peer_cred().ok()
                    )),
                    Err(e) => {
                        logging::warning(format!("pg_kafka: accepting a reader failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = pruning.tick() => self.prune(),
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Drops idle readers whose process went away (their socket reads end of file, or
    /// holds bytes nobody asked for), so that `connected` counts live readers and the
    /// worker starts new ones without waiting for a Fetch to stumble on a dead one.
    fn prune(&self) {
        let mut idle = self.idle.lock();
        let before = idle.len();
        idle.retain(|stream| {
            let mut byte = [0u8; 1];
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        for _ in idle.len()..before {
            self.connected.fetch_sub(1, Ordering::Relaxed);
            // The permit of a pruned reader; if a run holds it, that run finds no reader
            // and forgets it instead.
            if let Ok(permit) = self.available.try_acquire() {
                permit.forget();
            }
        }
    }

    fn add(&self, stream: UnixStream) {
        self.idle.lock().push(stream);
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.available.add_permits(1);
    }

    /// Runs `job` in a reader process, waiting for one to be free. `None` when no reader
    /// is connected, or the one used failed (it is dropped; its process exits and is
    /// restarted): the caller then runs the job on the main thread. An answer larger
    /// than `max_answer_bytes`, or later than `timeout`, counts as a failure.
    ///
    /// Once sent, the exchange runs in a task of its own: a caller that stops waiting
    /// (its client hung up) must not cut a reader off in the middle of an answer, which
    /// would cost the reader process.
    pub async fn run<J>(self: &Arc<Self>, job: &J, max_answer_bytes: usize, timeout: Duration) -> Option<Result<J::Answer, StorageError>>
    where
        J: ReaderJob,
        J::Answer: Send + 'static,
    {
        if self.connected() == 0 {
            return None;
        }
        let permit = self.available.clone().acquire_owned().await.ok()?;
        let Some(mut stream) = self.idle.lock().pop() else {
            permit.forget(); // its reader was pruned
            return None;
        };
        let mut request = vec![J::KIND];
        request.extend_from_slice(&job.encode());
        let readers = self.clone();
        let exchanged = tokio::spawn(async move {
            match tokio::time::timeout(timeout, exchange(&mut stream, &request, max_answer_bytes, J::decode_answer)).await {
                Ok(Ok(answer)) => {
                    readers.idle.lock().push(stream);
                    drop(permit); // back with its reader
                    Some(answer)
                }
                failed => {
                    permit.forget();
                    readers.connected.fetch_sub(1, Ordering::Relaxed);
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} ms", timeout.as_millis()),
                    };
                    logging::warning(format!("pg_kafka: a reader process failed, the main thread reads instead: {reason}"));
                    None
                }
            }
        });
        exchanged.await.ok().flatten()
    }
}

/// A reader's side: writes an answer frame, `u32` length and the pieces, gathered in as
/// few writes as the socket takes (a batch is not copied again on its way).
pub fn write_answer(stream: &mut impl std::io::Write, parts: &[Bytes]) -> std::io::Result<()> {
    let size: usize = parts.iter().map(Bytes::len).sum();
    let size = u32::try_from(size).map_err(|_| std::io::Error::other(format!("an answer of {size} bytes")))?.to_be_bytes();
    let mut slices: Vec<std::io::IoSlice> =
        std::iter::once(&size[..]).chain(parts.iter().map(|p| &p[..])).map(std::io::IoSlice::new).collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match stream.write_vectored(left) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `request` (kind and job) and reads the answer.
async fn exchange<A>(
    stream: &mut UnixStream,
    request: &[u8],
    max_answer_bytes: usize,
    decode: fn(Bytes) -> Result<Result<A, StorageError>, WireError>,
) -> std::io::Result<Result<A, StorageError>> {
    stream.write_u32(request.len() as u32).await?;
    stream.write_all(request).await?;
    let size = stream.read_u32().await? as usize;
    if size > max_answer_bytes {
        return Err(std::io::Error::other(format!("an answer of {size} bytes (at most {max_answer_bytes})")));
    }
    // Read into spare capacity: zeroing a megabyte first would cost as much as reading it.
    let mut answer = BytesMut::with_capacity(size);
    let mut body = stream.take(size as u64);
    while answer.len() < size {
        if body.read_buf(&mut answer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    decode(Bytes::from(answer)).map_err(|e| std::io::Error::other(format!("a malformed answer: {e}")))
}

/// Reader processes for tests: the reader's loop in a thread, on MemoryStorage.
#[cfg(test)]
pub(crate) mod fake {
    use std::io::Read;

    use crate::storage::bridge::DirectRunner;
    use crate::storage::memory::MemoryStorage;

    /// Connects to `path` and answers up to `answers` jobs with
    /// [`crate::service::answer_reader_job`], as the glue's reader does, calling
    /// `after_each` with its storage after each; ends when the worker side hangs up.
    pub fn reader(
        path: &std::path::Path,
        storage: MemoryStorage,
        answers: usize,
        mut after_each: impl FnMut(&mut MemoryStorage) + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let mut runner = DirectRunner(storage);
            let mut stream = super::connect(path.to_str().unwrap()).unwrap();
            for _ in 0..answers {
                let mut size = [0u8; 4];
                if stream.read_exact(&mut size).is_err() {
                    return;
                }
                let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
                stream.read_exact(&mut frame).unwrap();
                let mut send = |parts: &[bytes::Bytes]| super::write_answer(&mut stream, parts);
                if crate::service::answer_reader_job(&frame, &mut runner, &mut send).is_err() {
                    return;
                }
                after_each(&mut runner.0);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::reads::{PartitionRead, ReadPlan};
    use crate::storage::{MessageRows, Storage};

    fn fake_reader(path: std::path::PathBuf, storage: MemoryStorage, answers: usize) -> std::thread::JoinHandle<()> {
        fake::reader(&path, storage, answers, |_| {})
    }

    /// An abstract socket of its own for each test, as the worker binds (other tests of
    /// readers use socket files, which `bind` takes too).
    fn socket_path(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("@pg_kafka-readers-test-{}-{name}", std::process::id()))
    }

    #[tokio::test]
    async fn an_abstract_socket_leaves_nothing_in_the_file_system_and_takes_its_own_user() {
        let (readers, path, _stop) = accepting("abstract");
        assert!(!std::path::Path::new(&path).exists() && !std::path::Path::new(&path.to_str().unwrap()[1..]).exists());
        let _reader = connect(path.to_str().unwrap()).unwrap();
        until_connected(&readers).await;
        assert_eq!(readers.connected(), 1, "a peer of this process's own user is a reader");
        assert!(bind(path.to_str().unwrap()).is_err(), "the name is taken while the worker listens");
    }

    fn storage_with_messages() -> (MemoryStorage, i32) {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 1).unwrap();
        let rows = MessageRows {
            topic_ids: vec![topic.id; 3],
            partitions: vec![0; 3],
            offsets: vec![0, 1, 2],
            timestamps_ms: vec![1; 3],
            keys: vec![None; 3],
            values: vec![Some(Bytes::from_static(b"abc")); 3],
            headers: vec![None; 3],
            txns: Vec::new(),
        };
        storage.append(&rows).unwrap();
        (storage, topic.id)
    }

    /// Readers accepting on a socket of their own; the shutdown sender keeps them going.
    fn accepting(name: &str) -> (Arc<Readers>, std::path::PathBuf, watch::Sender<bool>) {
        let path = socket_path(name);
        let readers = Arc::new(Readers::default());
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(readers.clone().accept(bind(path.to_str().unwrap()).unwrap(), shutdown));
        (readers, path, stop)
    }

    async fn until_connected(readers: &Readers) {
        while readers.connected() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn plan_of(topic_id: i32, from: i64) -> ReadPlan {
        ReadPlan {
            reads: vec![PartitionRead {
                topic_id,
                partition: 0,
                from,
                below: 3,
                max_bytes: 1 << 20,
                layout: crate::storage::StorageLayout::Rows,
                codec: None,
            }],
            response_bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn plans_run_in_a_connected_reader_and_a_failed_one_is_dropped() {
        let (readers, path, _stop) = accepting("run");
        let (storage, topic_id) = storage_with_messages();
        let plan = plan_of(topic_id, 1);
        assert!(readers.run(&plan, 1 << 20, Duration::from_secs(5)).await.is_none(), "no reader yet");

        let reader = fake_reader(path, storage, 1);
        until_connected(&readers).await;
        let read = readers.run(&plan, 1 << 20, Duration::from_secs(5)).await.expect("a reader answered").unwrap();
        assert_eq!(
            crate::storage::batches::unpack(&read[0].clone().into_records()).unwrap().iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1, 2]
        );
        // The reader leaves after one answer: it is pruned while idle, and runs go to the
        // main thread.
        reader.join().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while readers.connected() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "a reader that left is still counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(readers.run(&plan, 1 << 20, Duration::from_secs(5)).await.is_none());
    }

    #[tokio::test]
    async fn an_answer_larger_than_allowed_is_a_failure() {
        let (readers, path, _stop) = accepting("large");
        let (storage, topic_id) = storage_with_messages();
        let _reader = fake_reader(path, storage, 1);
        until_connected(&readers).await;
        assert!(readers.run(&plan_of(topic_id, 0), 10, Duration::from_secs(5)).await.is_none());
        assert_eq!(readers.connected(), 0);
    }
}
