//! Topic configs: the keys pg_kafka enforces, and Kafka's defaults for the rest.
//!
//! Enforced keys are stored in `kafka.topic_configs` and take effect:
//! `max.message.bytes` in Produce, `retention.ms` and `retention.bytes` in the worker's
//! retention pass, `cleanup.policy` accepts only `delete` (no compaction). Every other
//! Kafka topic config is listed read-only with Kafka's default, so tools that describe
//! configs work; setting one to anything but its default is INVALID_CONFIG.

/// Where a config value comes from, as DescribeConfigs and CreateTopics (v5+) report it.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

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

pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    /// Whether pg_kafka stores and applies it (otherwise: read-only, always the default).
    pub enforced: bool,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

const fn enforced(name: &'static str, default: &'static str, config_type: ConfigType, doc: &'static str) -> ConfigDef {
    ConfigDef { name, default, enforced: true, config_type, doc }
}

const fn fixed(name: &'static str, default: &'static str, config_type: ConfigType) -> ConfigDef {
    ConfigDef { name, default, enforced: false, config_type, doc: "Not configurable in pg_kafka; shown with Kafka's default." }
}

/// `max.message.bytes`'s default as text; kept equal to [`DEFAULT_MAX_MESSAGE_BYTES`].
const MAX_MESSAGE_BYTES_DEFAULT: &str = "1048588";
const LONG_MAX: &str = "9223372036854775807";

/// Sorted by name, as DescribeConfigs lists them.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    enforced(
        "cleanup.policy",
        "delete",
        ConfigType::List,
        "Only \"delete\" is supported: old messages are deleted by retention.ms / retention.bytes.",
    ),
    fixed("compression.type", "producer", ConfigType::String),
    fixed("delete.retention.ms", "86400000", ConfigType::Long),
    fixed("file.delete.delay.ms", "60000", ConfigType::Long),
    fixed("flush.messages", LONG_MAX, ConfigType::Long),
    fixed("flush.ms", LONG_MAX, ConfigType::Long),
    fixed("follower.replication.throttled.replicas", "", ConfigType::List),
    fixed("index.interval.bytes", "4096", ConfigType::Int),
    fixed("leader.replication.throttled.replicas", "", ConfigType::List),
    fixed("local.retention.bytes", "-2", ConfigType::Long),
    fixed("local.retention.ms", "-2", ConfigType::Long),
    fixed("max.compaction.lag.ms", LONG_MAX, ConfigType::Long),
    enforced(
        "max.message.bytes",
        MAX_MESSAGE_BYTES_DEFAULT,
        ConfigType::Int,
        "The largest record batch a producer may send to this topic.",
    ),
    fixed("message.timestamp.after.max.ms", LONG_MAX, ConfigType::Long),
    fixed("message.timestamp.before.max.ms", LONG_MAX, ConfigType::Long),
    fixed("message.timestamp.type", "CreateTime", ConfigType::String),
    fixed("min.cleanable.dirty.ratio", "0.5", ConfigType::Double),
    fixed("min.compaction.lag.ms", "0", ConfigType::Long),
    fixed("min.insync.replicas", "1", ConfigType::Int),
    fixed("preallocate", "false", ConfigType::Boolean),
    fixed("remote.storage.enable", "false", ConfigType::Boolean),
    enforced(
        "retention.bytes",
        "-1",
        ConfigType::Long,
        "Per partition: the oldest messages are deleted once the partition holds more payload bytes than this. -1: no limit.",
    ),
    enforced(
        "retention.ms",
        "-1",
        ConfigType::Long,
        "Messages older than this (by timestamp) are deleted. -1 (pg_kafka's default, unlike Kafka's 7 days): kept until deleted.",
    ),
    fixed("segment.bytes", "1073741824", ConfigType::Int),
    fixed("segment.index.bytes", "10485760", ConfigType::Int),
    fixed("segment.jitter.ms", "0", ConfigType::Long),
    fixed("segment.ms", "604800000", ConfigType::Long),
    fixed("unclean.leader.election.enable", "false", ConfigType::Boolean),
];

pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Why `name = value` cannot be set on a topic, if it cannot.
pub fn invalid(name: &str, value: &str) -> Option<String> {
    if name == crate::storage::batches::LAYOUT_CONFIG {
        return Some(format!("{name} is chosen when a topic is created (CreateTopics) and cannot change"));
    }
    let Some(def) = definition(name) else { return Some(format!("unknown topic config \"{name}\"")) };
    if !def.enforced {
        return (value != def.default).then(|| format!("{name} cannot be changed in pg_kafka (it is always {:?})", def.default));
    }
    let long_at_least = |min: i64| value.parse::<i64>().ok().filter(|v| *v >= min).is_some();
    let valid = match name {
        "retention.ms" | "retention.bytes" => long_at_least(-1),
        "max.message.bytes" => value.parse::<i32>().ok().is_some_and(|v| v >= 0),
        "cleanup.policy" => !value.is_empty() && value.split(',').all(|p| p.trim() == "delete"),
        _ => true,
    };
    (!valid).then(|| match name {
        "cleanup.policy" => format!("cleanup.policy={value:?} is not supported: pg_kafka only deletes (no compaction)"),
        _ => format!("invalid value {value:?} for {name}"),
    })
}

/// Whether a valid `name = value` needs storing (read-only keys at their default do not).
pub fn is_stored(name: &str) -> bool {
    definition(name).is_some_and(|d| d.enforced)
}

/// One line of a topic's configuration as DescribeConfigs shows it.
pub struct EffectiveConfig {
    pub def: &'static ConfigDef,
    pub value: String,
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG) rather than the default (DEFAULT_CONFIG).
    pub is_set: bool,
}

/// Every topic config with its value on a topic whose stored configs are `stored`.
pub fn effective(stored: &[(String, String)]) -> Vec<EffectiveConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| match stored.iter().find(|(n, _)| n == def.name) {
            Some((_, value)) => EffectiveConfig { def, value: value.clone(), is_set: true },
            None => EffectiveConfig { def, value: def.default.to_owned(), is_set: false },
        })
        .collect()
}

/// The stored value of `name`, parsed as a number, or `None` when unset or not a number.
pub fn stored_i64(stored: &[(String, String)], name: &str) -> Option<i64> {
    stored.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DEFAULT_MAX_MESSAGE_BYTES;

    #[test]
    fn the_list_is_sorted_and_defaults_match_the_constants() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(definition("max.message.bytes").unwrap().default, DEFAULT_MAX_MESSAGE_BYTES.to_string());
        for def in TOPIC_CONFIGS {
            assert_eq!(invalid(def.name, def.default), None, "{}", def.name);
        }
    }

    #[test]
    fn enforced_keys_are_validated_and_read_only_keys_refuse_changes() {
        assert_eq!(invalid("retention.ms", "60000"), None);
        assert!(invalid("retention.ms", "-2").is_some());
        assert!(invalid("retention.bytes", "lots").is_some());
        assert!(invalid("max.message.bytes", "99999999999").is_some());
        assert!(invalid("cleanup.policy", "compact").is_some());
        assert!(invalid("cleanup.policy", "delete,compact").is_some());
        assert!(invalid("segment.bytes", "1").is_some());
        assert!(invalid("no.such.config", "1").is_some());
    }
}

/// One requested change to a topic's configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
    /// Adds an item to a list config (IncrementalAlterConfigs APPEND).
    Append(String, String),
    /// Removes an item from a list config (IncrementalAlterConfigs SUBTRACT).
    Subtract(String, String),
}

/// The stored configs after `changes`, starting from `current` (or from nothing when
/// `replace_all`, as AlterConfigs does), or why they cannot be made.
pub fn apply(current: &[(String, String)], changes: &[ConfigChange], replace_all: bool) -> Result<Vec<(String, String)>, String> {
    let mut configs: Vec<(String, String)> = if replace_all { Vec::new() } else { current.to_vec() };
    let value_of = |configs: &[(String, String)], name: &str| {
        configs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).or_else(|| definition(name).map(|d| d.default.to_owned()))
    };
    for change in changes {
        let (name, value) = match change {
            ConfigChange::Set(name, value) => (name, Some(value.clone())),
            ConfigChange::Delete(name) => (name, None),
            ConfigChange::Append(name, item) | ConfigChange::Subtract(name, item) => {
                if definition(name).map(|d| d.config_type) != Some(ConfigType::List) {
                    return Err(format!("{name} is not a list: APPEND and SUBTRACT do not apply"));
                }
                let mut items: Vec<String> = value_of(&configs, name)
                    .unwrap_or_default()
                    .split(',')
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty())
                    .collect();
                if matches!(change, ConfigChange::Append(..)) {
                    if !items.contains(item) {
                        items.push(item.clone());
                    }
                } else {
                    items.retain(|i| i != item);
                }
                (name, Some(items.join(",")))
            }
        };
        if let Some(problem) = value
            .as_ref()
            .and_then(|v| invalid(name, v))
            .or_else(|| definition(name).is_none().then(|| format!("unknown topic config \"{name}\"")))
        {
            return Err(problem);
        }
        configs.retain(|(n, _)| n != name);
        if let Some(value) = value.filter(|_| is_stored(name)) {
            configs.push((name.clone(), value));
        }
    }
    configs.sort();
    Ok(configs)
}

#[cfg(test)]
mod change_tests {
    use super::*;

    fn set(n: &str, v: &str) -> ConfigChange {
        ConfigChange::Set(n.into(), v.into())
    }

    #[test]
    fn changes_apply_in_order_and_replace_all_starts_empty() {
        let current = vec![("retention.ms".to_owned(), "1000".to_owned())];
        let changed = apply(&current, &[set("max.message.bytes", "500"), ConfigChange::Delete("retention.ms".into())], false).unwrap();
        assert_eq!(changed, vec![("max.message.bytes".to_owned(), "500".to_owned())]);
        let replaced = apply(&current, &[set("retention.bytes", "10")], true).unwrap();
        assert_eq!(replaced, vec![("retention.bytes".to_owned(), "10".to_owned())]);
        // A read-only key at its default is accepted and not stored.
        assert_eq!(apply(&[], &[set("segment.bytes", "1073741824")], false).unwrap(), vec![]);
        assert!(apply(&[], &[set("segment.bytes", "1")], false).is_err());
        assert!(apply(&[], &[ConfigChange::Append("retention.ms".into(), "1".into())], false).is_err());
        let appended = apply(&[], &[ConfigChange::Append("cleanup.policy".into(), "delete".into())], false).unwrap();
        assert_eq!(appended, vec![("cleanup.policy".to_owned(), "delete".to_owned())]);
        assert!(apply(&[], &[ConfigChange::Subtract("cleanup.policy".into(), "delete".into())], false).is_err());
    }
}
