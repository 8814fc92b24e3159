//! Kafka's topic configs: every key a Kafka 4.x broker accepts on a topic, with its type,
//! Kafka's validation and message, the broker setting it falls back to, and the
//! [`TopicSettings`] the broker acts on, parsed from what a topic stores.
//!
//! Why one table: CreateTopics, AlterConfigs and IncrementalAlterConfigs validate against
//! it, DescribeConfigs lists it (with each key's broker synonym), and Produce, Fetch and
//! the cleaner read [`TopicSettings`] made from it — a default is written down once.
//! The list and the rules are those of Kafka 4.4's `LogConfig` (internal keys left out).

use thiserror::Error;

/// DescribeConfigs `config_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// What a value must be, beyond its type (Kafka's validators).
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    /// `compression.gzip.level`: 1-9, or -1 (the codec's default).
    GzipLevel,
    /// A double in 0..=1.
    Ratio,
    OneOf(&'static [&'static str]),
    /// A comma-separated list of these (each at most once).
    ListOf(&'static [&'static str]),
    /// `*`, or `partition:broker` pairs, comma separated (the throttled-replica lists).
    Replicas,
}

pub struct ConfigDef {
    pub name: &'static str,
    /// The value when the topic sets none: Kafka's default, or pg_kafka's broker setting
    /// where [`ConfigDef::broker_default`] says it differs.
    pub default: &'static str,
    pub config_type: ConfigType,
    pub rule: Rule,
    /// The broker setting a topic falls back to (DescribeConfigs' synonym), if any.
    pub synonym: Option<&'static str>,
    /// The default is pg_kafka's broker setting, not Kafka's (source STATIC_BROKER_CONFIG).
    pub broker_default: bool,
    /// Whether pg_kafka acts on it (the rest are stored and described only).
    pub acts: bool,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
/// `max.message.bytes`'s default as text; kept equal to [`DEFAULT_MAX_MESSAGE_BYTES`].
const MAX_MESSAGE_BYTES_DEFAULT: &str = "1048588";
/// Kafka's default `max.message.bytes` (1 MiB plus batch overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: i32 = 1_048_588;

pub const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
pub const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
pub const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

#[allow(clippy::too_many_arguments)]
const fn def(
    name: &'static str,
    default: &'static str,
    config_type: ConfigType,
    rule: Rule,
    synonym: Option<&'static str>,
    acts: bool,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef { name, default, config_type, rule, synonym, broker_default: false, acts, doc }
}

/// Stored and described, with no effect on a single Postgres-backed broker.
const STORED_ONLY: &str = "Accepted and stored as Kafka does; it has no effect in pg_kafka (no segment files, replicas or tiered storage).";

use ConfigType::{Boolean, Double, Int, List, Long, String as Text};

/// Sorted by name, as DescribeConfigs lists them.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def("cleanup.policy", "delete", List, Rule::ListOf(CLEANUP_POLICIES), Some("log.cleanup.policy"), true,
        "delete: old messages go by retention.ms / retention.bytes; compact: only the latest message of each key is kept; both: compact, then delete by retention."),
    def("compression.gzip.level", "-1", Int, Rule::GzipLevel, Some("compression.gzip.level"), false, STORED_ONLY),
    def("compression.lz4.level", "9", Int, Rule::Between(1, 17), Some("compression.lz4.level"), false, STORED_ONLY),
    def("compression.type", "producer", Text, Rule::OneOf(COMPRESSION_TYPES), Some("compression.type"), false,
        "The codec batches are kept in; producer: as the producer sent them."),
    def("compression.zstd.level", "3", Int, Rule::Between(-131_072, 22), Some("compression.zstd.level"), false, STORED_ONLY),
    def("delete.retention.ms", "86400000", Long, Rule::AtLeast(0), Some("log.cleaner.delete.retention.ms"), true,
        "How long a tombstone (a null value) of a compacted topic is kept after compaction reached it."),
    def("errors.deadletterqueue.group.enable", "false", Boolean, Rule::Any, None, false, STORED_ONLY),
    def("file.delete.delay.ms", "60000", Long, Rule::AtLeast(0), Some("log.segment.delete.delay.ms"), false, STORED_ONLY),
    def("flush.messages", LONG_MAX, Long, Rule::AtLeast(1), Some("log.flush.interval.messages"), false,
        "Stored only: every acknowledged append is already flushed (the group commit's Postgres commit)."),
    def("flush.ms", LONG_MAX, Long, Rule::AtLeast(0), Some("log.flush.interval.ms"), false,
        "Stored only: every acknowledged append is already flushed (the group commit's Postgres commit)."),
    def("follower.replication.throttled.replicas", "", List, Rule::Replicas, None, false, STORED_ONLY),
    def("index.interval.bytes", "4096", Int, Rule::AtLeast(0), Some("log.index.interval.bytes"), false, STORED_ONLY),
    def("leader.replication.throttled.replicas", "", List, Rule::Replicas, None, false, STORED_ONLY),
    def("local.retention.bytes", "-2", Long, Rule::AtLeast(-2), Some("log.local.retention.bytes"), false, STORED_ONLY),
    def("local.retention.ms", "-2", Long, Rule::AtLeast(-2), Some("log.local.retention.ms"), false, STORED_ONLY),
    def("max.compaction.lag.ms", LONG_MAX, Long, Rule::AtLeast(1), Some("log.cleaner.max.compaction.lag.ms"), true,
        "The longest a message of a compacted topic stays uncompacted."),
    def("max.decompressed.message.bytes", "2147483639", Int, Rule::Between(1, 2_147_483_639), Some("max.decompressed.message.bytes"), false, STORED_ONLY),
    def("max.message.bytes", MAX_MESSAGE_BYTES_DEFAULT, Int, Rule::AtLeast(0), Some("message.max.bytes"), true,
        "The largest record batch a producer may send to this topic."),
    def("message.timestamp.after.max.ms", "3600000", Long, Rule::AtLeast(0), Some("log.message.timestamp.after.max.ms"), true,
        "How far in the future a CreateTime timestamp may be; later ones are refused (INVALID_TIMESTAMP)."),
    def("message.timestamp.before.max.ms", LONG_MAX, Long, Rule::AtLeast(0), Some("log.message.timestamp.before.max.ms"), true,
        "How far in the past a CreateTime timestamp may be; earlier ones are refused (INVALID_TIMESTAMP)."),
    def("message.timestamp.type", "CreateTime", Text, Rule::OneOf(TIMESTAMP_TYPES), Some("log.message.timestamp.type"), true,
        "CreateTime: the producer's timestamps; LogAppendTime: the time the broker appended the batch."),
    def("min.cleanable.dirty.ratio", "0.5", Double, Rule::Ratio, Some("log.cleaner.min.cleanable.ratio"), true,
        "Compaction starts once this share of a compacted partition was written since the last pass."),
    def("min.compaction.lag.ms", "0", Long, Rule::AtLeast(0), Some("log.cleaner.min.compaction.lag.ms"), true,
        "The shortest time a message of a compacted topic stays uncompacted."),
    def("min.insync.replicas", "1", Int, Rule::AtLeast(1), Some("min.insync.replicas"), false, STORED_ONLY),
    def("preallocate", "false", Boolean, Rule::Any, Some("log.preallocate"), false, STORED_ONLY),
    def("remote.copy.lag.bytes", "-1", Long, Rule::AtLeast(-1), Some("log.remote.copy.lag.bytes"), false, STORED_ONLY),
    def("remote.copy.lag.ms", "0", Long, Rule::AtLeast(-1), Some("log.remote.copy.lag.ms"), false, STORED_ONLY),
    def("remote.log.copy.disable", "false", Boolean, Rule::Any, None, false, STORED_ONLY),
    def("remote.log.delete.on.disable", "false", Boolean, Rule::Any, None, false, STORED_ONLY),
    def("remote.storage.enable", "false", Boolean, Rule::Any, None, false, STORED_ONLY),
    def("retention.bytes", "-1", Long, Rule::Any, Some("log.retention.bytes"), true,
        "Per partition: the oldest messages are deleted once the partition holds more payload bytes than this. -1: no limit."),
    ConfigDef {
        broker_default: true,
        ..def("retention.ms", "-1", Long, Rule::AtLeast(-1), Some("log.retention.ms"), true,
            "Messages older than this (by timestamp) are deleted. -1 (pg_kafka's broker default, unlike Kafka's 7 days): kept until deleted.")
    },
    def("segment.bytes", "1073741824", Int, Rule::AtLeast(1_048_576), Some("log.segment.bytes"), true,
        "Compaction leaves the newest this many bytes of a partition alone (Kafka's active segment)."),
    def("segment.index.bytes", "10485760", Int, Rule::AtLeast(4), Some("log.index.size.max.bytes"), false, STORED_ONLY),
    def("segment.jitter.ms", "0", Long, Rule::AtLeast(0), Some("log.roll.jitter.ms"), false, STORED_ONLY),
    def("segment.ms", "604800000", Long, Rule::AtLeast(1), Some("log.roll.ms"), true,
        "Compaction leaves messages newer than this alone (Kafka's active segment)."),
    def("unclean.leader.election.enable", "false", Boolean, Rule::Any, Some("unclean.leader.election.enable"), false, STORED_ONLY),
];

pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why a topic config cannot be set, in Kafka's words (INVALID_CONFIG's message).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidConfig {
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    Value { name: String, value: String, reason: String },
}

/// Checks `name = value` as Kafka's `LogConfig.validate` does.
pub fn validate(name: &str, value: &str) -> Result<(), InvalidConfig> {
    let def = definition(name).ok_or_else(|| InvalidConfig::Unknown(name.to_owned()))?;
    check(def, value.trim()).map_err(|reason| InvalidConfig::Value { name: name.to_owned(), value: value.to_owned(), reason })
}

fn check(def: &ConfigDef, value: &str) -> Result<(), String> {
    let number = match def.config_type {
        Int => Some(value.parse::<i32>().map(i64::from).map_err(|_| "Not a number of type INT".to_owned())?),
        Long => Some(value.parse::<i64>().map_err(|_| "Not a number of type LONG".to_owned())?),
        Double => {
            let ratio = value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or("Not a number of type DOUBLE")?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(if ratio < 0.0 { "Value must be at least 0" } else { "Value must be no more than 1" }.to_owned());
            }
            None
        }
        Boolean => {
            return ["true", "false"]
                .iter()
                .any(|b| value.eq_ignore_ascii_case(b))
                .then_some(())
                .ok_or_else(|| "Expected value to be either true or false".to_owned())
        }
        Text | List => None,
    };
    match (def.rule, number) {
        (Rule::AtLeast(min), Some(n)) if n < min => Err(format!("Value must be at least {min}")),
        (Rule::Between(min, _), Some(n)) if n < min => Err(format!("Value must be at least {min}")),
        (Rule::Between(_, max), Some(n)) if n > max => Err(format!("Value must be no more than {max}")),
        (Rule::GzipLevel, Some(n)) if n != -1 && !(1..=9).contains(&n) => Err("Value must be between 1 and 9, or -1".to_owned()),
        (Rule::OneOf(allowed), _) if !allowed.contains(&value) => Err(format!("String must be one of: {}", allowed.join(", "))),
        (Rule::ListOf(allowed), _) => check_list(value, allowed),
        (Rule::Replicas, _) => check_replicas(value),
        _ => Ok(()),
    }
}

fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|i| !i.is_empty())
}

fn check_list(value: &str, allowed: &[&str]) -> Result<(), String> {
    let items: Vec<&str> = list_items(value).collect();
    if let Some(bad) = items.iter().find(|i| !allowed.contains(i)) {
        return Err(format!("String must be one of: {} (not {bad})", allowed.join(", ")));
    }
    if items.iter().enumerate().any(|(at, i)| items[..at].contains(i)) {
        return Err("values must not be duplicated".to_owned());
    }
    Ok(())
}

fn check_replicas(value: &str) -> Result<(), String> {
    let pair = |item: &str| item.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok());
    if value.trim() == "*" || list_items(value).all(pair) {
        Ok(())
    } else {
        Err("must be *, or a list of [partitionId]:[brokerId]".to_owned())
    }
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

/// `compression.type` with its level (`compression.gzip.level`, `compression.zstd.level`;
/// LZ4 is written at its one level).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TopicCompression {
    /// Batches stay as each producer compressed them.
    #[default]
    Producer,
    Uncompressed,
    Gzip {
        level: i32,
    },
    Snappy,
    Lz4,
    Zstd {
        level: i32,
    },
}

/// What Produce, Fetch and the cleaner act on, parsed once from a topic's stored configs
/// (unset keys: their defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    pub max_message_bytes: i32,
    /// `cleanup.policy` contains `delete`: retention.ms / retention.bytes apply.
    pub delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub compact: bool,
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms` / `after.max.ms` (CreateTime only).
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// What compaction follows (read when `compact`).
    pub compaction: CompactionSettings,
    /// The codec stored batches (and, in the row layout, fetched ones) are in.
    pub compression: TopicCompression,
    /// `min.insync.replicas`: copies an acks=all produce needs while synchronous
    /// replication is on (writer/replicas.rs).
    pub min_insync_replicas: i64,
}

/// The configs that say when and how far a compacted partition is cleaned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionSettings {
    pub min_lag_ms: i64,
    pub max_lag_ms: i64,
    /// How long a tombstone stays after compaction reached it.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` in millionths (the settings stay `Eq`).
    pub min_dirty_ppm: u32,
    /// `segment.bytes` and `segment.ms`: the head compaction leaves alone.
    pub segment_bytes: i64,
    pub segment_ms: i64,
}

impl Default for TopicSettings {
    fn default() -> TopicSettings {
        TopicSettings::from_stored(&[])
    }
}

impl TopicSettings {
    /// The settings of a topic storing `stored` (`(name, value)` pairs); a stored value
    /// that no longer parses (set with SQL, say) counts as unset.
    pub fn from_stored(stored: &[(String, String)]) -> TopicSettings {
        let text = |name: &str| {
            stored
                .iter()
                .find(|(n, v)| n == name && validate(n, v).is_ok())
                .map(|(_, v)| v.as_str())
                .or_else(|| definition(name).map(|d| d.default))
                .unwrap_or_default()
        };
        let number = |name: &str| text(name).trim().parse::<i64>().unwrap_or(i64::MAX);
        let policy: Vec<&str> = list_items(text("cleanup.policy")).collect();
        TopicSettings {
            max_message_bytes: text("max.message.bytes").trim().parse().unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            delete: policy.contains(&"delete"),
            compact: policy.contains(&"compact"),
            timestamp_type: if text("message.timestamp.type") == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            timestamp_before_max_ms: number("message.timestamp.before.max.ms"),
            timestamp_after_max_ms: number("message.timestamp.after.max.ms"),
            min_insync_replicas: text("min.insync.replicas").trim().parse().unwrap_or(1),
            compaction: CompactionSettings {
                min_lag_ms: number("min.compaction.lag.ms"),
                max_lag_ms: number("max.compaction.lag.ms"),
                delete_retention_ms: number("delete.retention.ms"),
                min_dirty_ppm: text("min.cleanable.dirty.ratio").trim().parse::<f64>().map_or(500_000, |r| (r * 1e6).round() as u32),
                segment_bytes: number("segment.bytes"),
                segment_ms: number("segment.ms"),
            },
            compression: match text("compression.type") {
                "uncompressed" => TopicCompression::Uncompressed,
                "gzip" => TopicCompression::Gzip { level: number("compression.gzip.level") as i32 },
                "snappy" => TopicCompression::Snappy,
                "lz4" => TopicCompression::Lz4,
                "zstd" => TopicCompression::Zstd { level: number("compression.zstd.level") as i32 },
                _ => TopicCompression::Producer,
            },
        }
    }

    /// Whether a CreateTime `timestamp` (ms) is within the topic's bounds around `now_ms`
    /// (-1, no timestamp, always is: Kafka checks only timestamps that are there).
    pub fn timestamp_in_range(&self, timestamp: i64, now_ms: i64) -> bool {
        self.timestamp_type == TimestampType::LogAppendTime
            || timestamp == -1
            || (now_ms.saturating_sub(timestamp) <= self.timestamp_before_max_ms
                && timestamp.saturating_sub(now_ms) <= self.timestamp_after_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_every_default_is_valid() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(definition("max.message.bytes").unwrap().default, DEFAULT_MAX_MESSAGE_BYTES.to_string());
        for def in TOPIC_CONFIGS {
            assert_eq!(validate(def.name, def.default), Ok(()), "{}", def.name);
        }
    }

    #[test]
    fn values_are_checked_as_kafka_checks_them() {
        let refused = |n: &str, v: &str| validate(n, v).unwrap_err().to_string();
        assert_eq!(validate("cleanup.policy", "compact"), Ok(()));
        assert_eq!(validate("cleanup.policy", "compact,delete"), Ok(()));
        assert_eq!(validate("cleanup.policy", "delete, compact"), Ok(()));
        assert!(refused("cleanup.policy", "compacted").contains("String must be one of: compact, delete"));
        assert!(refused("cleanup.policy", "compact,compact").contains("duplicated"));
        assert_eq!(refused("retention.ms", "-2"), "Invalid value -2 for configuration retention.ms: Value must be at least -1");
        assert!(refused("retention.bytes", "lots").ends_with("Not a number of type LONG"));
        assert!(refused("max.message.bytes", "99999999999").ends_with("Not a number of type INT"));
        assert!(refused("segment.bytes", "1").ends_with("Value must be at least 1048576"));
        assert_eq!(validate("segment.bytes", "52428800"), Ok(()));
        assert!(refused("min.cleanable.dirty.ratio", "1.5").ends_with("no more than 1"));
        assert_eq!(validate("min.cleanable.dirty.ratio", "0.01"), Ok(()));
        assert!(refused("message.timestamp.type", "Now").contains("CreateTime, LogAppendTime"));
        assert!(refused("compression.gzip.level", "0").contains("between 1 and 9"));
        assert_eq!(validate("compression.zstd.level", "-5"), Ok(()));
        assert_eq!(validate("preallocate", "TRUE"), Ok(()));
        assert!(refused("preallocate", "yes").contains("true or false"));
        assert_eq!(validate("leader.replication.throttled.replicas", "0:1, 1:1"), Ok(()));
        assert_eq!(validate("leader.replication.throttled.replicas", "*"), Ok(()));
        assert!(validate("leader.replication.throttled.replicas", "0").is_err());
        assert_eq!(refused("no.such.config", "1"), "Unknown topic config name: no.such.config");
    }

    #[test]
    fn settings_follow_what_is_stored() {
        let stored = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        let plain = TopicSettings::default();
        assert!(plain.delete && !plain.compact);
        assert_eq!(plain.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
        let compacted = TopicSettings::from_stored(&stored(&[("cleanup.policy", "compact"), ("max.message.bytes", "bad")]));
        assert!(compacted.compact && !compacted.delete);
        assert_eq!(compacted.compaction.min_dirty_ppm, 500_000);
        assert_eq!(compacted.compaction.segment_bytes, 1 << 30);
        let eager = TopicSettings::from_stored(&stored(&[("min.cleanable.dirty.ratio", "0.01"), ("segment.ms", "100")]));
        assert_eq!((eager.compaction.min_dirty_ppm, eager.compaction.segment_ms), (10_000, 100));
        assert_eq!(compacted.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES, "an unparsable stored value counts as unset");
        let now = 1_000_000_000;
        assert!(plain.timestamp_in_range(now + 3_600_000, now));
        assert!(!plain.timestamp_in_range(now + 3_600_001, now), "Kafka 4's default: at most an hour ahead");
        assert!(plain.timestamp_in_range(0, now));
        assert!(plain.timestamp_in_range(-1, now));
        let bounded = TopicSettings::from_stored(&stored(&[("message.timestamp.before.max.ms", "1000")]));
        assert!(!bounded.timestamp_in_range(now - 1001, now));
        let append = TopicSettings::from_stored(&stored(&[("message.timestamp.type", "LogAppendTime")]));
        assert_eq!(append.timestamp_type, TimestampType::LogAppendTime);
        assert!(append.timestamp_in_range(i64::MAX, now), "the broker's time replaces the producer's");
    }
}
