//! Retention: every `pg_kafka.retention_check_interval_ms`, partitions of topics with
//! `retention.ms` or `retention.bytes` set lose their oldest messages, exactly as
//! DeleteRecords would remove them: the log start moves forward (kept in
//! `kafka.partition_starts`), rows below it are deleted, offsets are never reused, and
//! Fetch sees the new log start at once (consumers behind it get OFFSET_OUT_OF_RANGE and
//! reset, as with Kafka).

use std::time::{Duration, Instant};

use crate::logging;
use crate::storage::bridge::JobRunner;
use crate::storage::watermarks::Watermarks;

pub struct Retention {
    interval: Duration,
    last_run: Instant,
    watermarks: Watermarks,
}

impl Retention {
    pub fn new(interval: Duration, watermarks: Watermarks) -> Retention {
        Retention { interval, last_run: Instant::now(), watermarks }
    }

    /// Applies retention if the interval has passed; returns the time until the next run.
    pub fn run_if_due(&mut self, runner: &mut dyn JobRunner) -> Duration {
        let since = self.last_run.elapsed();
        if since < self.interval {
            return self.interval - since;
        }
        self.last_run = Instant::now();
        let now_ms = crate::storage::now_ms();
        let mut moved = Vec::new();
        let committed = runner.run(&mut |storage| {
            moved = storage.retention_starts(now_ms)?;
            for &(topic_id, partition, start) in &moved {
                storage.delete_records_before(topic_id, partition, start)?;
            }
            Ok(())
        });
        if committed.is_ok() {
            for &(topic_id, partition, start) in &moved {
                self.watermarks.raise_log_start(topic_id, partition, start);
            }
            if !moved.is_empty() {
                logging::log(format!("pg_kafka: retention moved the log start of {} partitions", moved.len()));
            }
        } else {
            logging::warning("pg_kafka: applying retention failed; see the log line above".to_owned());
        }
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bridge::DirectRunner;
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{retention_scenario_rows, Storage};

    #[test]
    fn old_and_oversized_prefixes_are_deleted_and_the_log_start_moves() {
        let mut storage = MemoryStorage::default();
        let topic = storage.create_topic("t", 2).unwrap();
        let now = crate::storage::now_ms();
        storage.append(&retention_scenario_rows(topic.id, now)).unwrap();
        storage
            .replace_topic_configs(topic.id, &[("retention.bytes".into(), "35".into()), ("retention.ms".into(), "150000".into())])
            .unwrap();
        let watermarks = Watermarks::default();
        watermarks.load(&mut storage, &[(topic.id, 0), (topic.id, 1)]).unwrap();
        let mut retention = Retention::new(Duration::ZERO, watermarks.clone());
        let mut runner = DirectRunner(storage);
        retention.run_if_due(&mut runner);
        // Partition 0: by time, messages from the last 150 s are kept (offsets 7, 8, 9); by
        // size, 35 bytes of 10-byte values keep the last 3 too.
        assert_eq!(runner.0.first_offset(topic.id, 0).unwrap(), Some(7));
        assert_eq!(runner.0.first_offset(topic.id, 1).unwrap(), Some(7), "size alone");
        assert_eq!(runner.0.next_offset(topic.id, 0).unwrap(), 10);
        assert_eq!(watermarks.get(topic.id, 0).map(|b| (b.log_start, b.high)), Some((7, 10)));
    }
}
