//! What forwarders report: per partition the next offset committed to the external cluster
//! and pg_kafka's high watermark as last fetched, per topic whether a session is up and how
//! many messages went out. The supervisor records progress from it in Postgres; Prometheus
//! reads it here, in its text format, from a listener of this process.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

/// A partition's forward cursor, to be recorded in `kafka.shadow_progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub topic_id: i32,
    pub partition: i32,
    pub next_offset: i64,
    /// The source's high watermark as last fetched (the lag of an import is on the
    /// external side, where SQL cannot see).
    pub source_high_watermark: Option<i64>,
}

#[derive(Default)]
struct PartitionFigures {
    topic_id: i32,
    next_offset: i64,
    high_watermark: Option<i64>,
    recorded: bool,
}

#[derive(Default)]
struct TopicFigures {
    up: bool,
    forwarded: u64,
    transactions: u64,
    sessions: u64,
}

/// A per-topic metric: name, type, help, and how to read it.
type Family = (&'static str, &'static str, &'static str, fn(&TopicFigures) -> u64);

#[derive(Default)]
pub struct Stats {
    partitions: Mutex<BTreeMap<(String, i32), PartitionFigures>>,
    topics: Mutex<BTreeMap<String, TopicFigures>>,
}

impl Stats {
    /// A session of `topic` started (`up`) or ended.
    pub fn session(&self, topic: &str, up: bool) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let figures = topics.entry(topic.to_owned()).or_default();
        figures.sessions += u64::from(up && !figures.up);
        figures.up = up;
    }

    /// A transaction of `messages` committed; `cursor` holds each partition's next offset.
    pub fn committed(&self, topic: &str, topic_id: i32, messages: u64, cursor: &BTreeMap<i32, i64>) {
        {
            let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
            let figures = topics.entry(topic.to_owned()).or_default();
            figures.forwarded += messages;
            figures.transactions += 1;
        }
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        for (&partition, &next_offset) in cursor {
            let figures = partitions.entry((topic.to_owned(), partition)).or_default();
            figures.topic_id = topic_id;
            if next_offset > figures.next_offset {
                figures.next_offset = next_offset;
                figures.recorded = false;
            }
        }
    }

    /// The cursor a session starts from (read from the external cluster): shown, and
    /// recorded, before anything is forwarded.
    pub fn started_at(&self, topic: &str, topic_id: i32, cursor: &BTreeMap<i32, i64>) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        for (&partition, &next_offset) in cursor {
            let figures = partitions.entry((topic.to_owned(), partition)).or_default();
            figures.topic_id = topic_id;
            figures.next_offset = next_offset;
            figures.recorded = false;
        }
    }

    /// pg_kafka's high watermark of a partition, as the source reader last saw it.
    pub fn high_watermark(&self, topic: &str, partition: i32, high_watermark: i64) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(figures) = partitions.get_mut(&(topic.to_owned(), partition)) {
            if figures.high_watermark != Some(high_watermark) {
                figures.high_watermark = Some(high_watermark);
                figures.recorded = false;
            }
        }
    }

    /// Progress not yet recorded in Postgres, marked recorded (the record is best effort).
    pub fn unrecorded_progress(&self) -> Vec<Progress> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions
            .iter_mut()
            .filter(|(_, figures)| !figures.recorded)
            .map(|((_, partition), figures)| {
                figures.recorded = true;
                Progress {
                    topic_id: figures.topic_id,
                    partition: *partition,
                    next_offset: figures.next_offset,
                    source_high_watermark: figures.high_watermark,
                }
            })
            .collect()
    }

    /// Drops a topic no longer forwarded.
    pub fn forget(&self, topic: &str) {
        self.topics.lock().unwrap_or_else(|e| e.into_inner()).remove(topic);
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).retain(|(t, _), _| t != topic);
    }

    /// Prometheus's text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP pg_kafka_shadow_lag_messages Messages of a partition not yet committed to the external cluster\n");
        out.push_str("# TYPE pg_kafka_shadow_lag_messages gauge\n");
        let partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        for ((topic, partition), figures) in partitions.iter() {
            let lag = (figures.high_watermark.unwrap_or(figures.next_offset) - figures.next_offset).max(0);
            out.push_str(&format!("pg_kafka_shadow_lag_messages{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}\n"));
        }
        out.push_str("# HELP pg_kafka_shadow_forwarded_offset Next offset of a partition committed to the external cluster\n");
        out.push_str("# TYPE pg_kafka_shadow_forwarded_offset gauge\n");
        for ((topic, partition), figures) in partitions.iter() {
            out.push_str(&format!(
                "pg_kafka_shadow_forwarded_offset{{topic=\"{topic}\",partition=\"{partition}\"}} {}\n",
                figures.next_offset
            ));
        }
        drop(partitions);
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let families: [Family; 4] = [
            ("pg_kafka_shadow_up", "gauge", "1 while a forwarding session of the topic runs", |f| u64::from(f.up)),
            ("pg_kafka_shadow_messages_total", "counter", "Messages committed to the external cluster", |f| f.forwarded),
            ("pg_kafka_shadow_transactions_total", "counter", "External transactions committed", |f| f.transactions),
            ("pg_kafka_shadow_sessions_total", "counter", "Forwarding sessions started (more than one: restarts)", |f| f.sessions),
        ];
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (topic, figures) in topics.iter() {
                out.push_str(&format!("{name}{{topic=\"{topic}\"}} {}\n", value(figures)));
            }
        }
        out
    }
}

/// Serves [`Stats::render`] to every connection on `address`, from a thread of its own.
pub fn serve(address: &str, stats: Arc<Stats>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
            let mut stream = stream;
            // The request itself does not matter (one page); read what fits, bounded.
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body = stats.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body.as_bytes()));
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_recorded_once_and_lag_is_the_gap_to_the_high_watermark() {
        let stats = Stats::default();
        stats.started_at("t", 7, &BTreeMap::from([(0, 0), (1, 5)]));
        stats.session("t", true);
        assert_eq!(stats.unrecorded_progress().len(), 2);
        assert!(stats.unrecorded_progress().is_empty());
        stats.committed("t", 7, 10, &BTreeMap::from([(0, 10)]));
        stats.high_watermark("t", 0, 12);
        assert_eq!(
            stats.unrecorded_progress(),
            vec![Progress { topic_id: 7, partition: 0, next_offset: 10, source_high_watermark: Some(12) }]
        );
        let page = stats.render();
        assert!(page.contains("pg_kafka_shadow_lag_messages{topic=\"t\",partition=\"0\"} 2\n"), "{page}");
        assert!(page.contains("pg_kafka_shadow_messages_total{topic=\"t\"} 10\n"), "{page}");
        assert!(page.contains("pg_kafka_shadow_up{topic=\"t\"} 1\n"), "{page}");
        stats.forget("t");
        assert!(!stats.render().contains("topic=\"t\""));
    }
}
