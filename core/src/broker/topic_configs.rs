//! Topic configs as the config APIs see them: where a value comes from, every key's
//! effective value on a topic, and a list of requested changes applied to what a topic
//! stores. The keys, their rules and defaults are `config::topic`'s one table.
//!
//! Every key Kafka accepts is validated as Kafka does and stored when set (its own
//! defaults are not stored); DescribeConfigs reports set keys as DYNAMIC_TOPIC_CONFIG
//! and unset ones as DEFAULT_CONFIG, or STATIC_BROKER_CONFIG where pg_kafka's broker
//! default differs from Kafka's (`retention.ms`).

use crate::config::topic::validate;
pub use crate::config::topic::{definition, ConfigDef, ConfigType, TOPIC_CONFIGS};

/// Where a config value comes from, as DescribeConfigs and CreateTopics (v5+) report it.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

/// Why `name = value` cannot be set on a topic, if it cannot.
pub fn invalid(name: &str, value: &str) -> Option<String> {
    if name == crate::storage::batches::LAYOUT_CONFIG {
        return Some(format!("{name} is chosen when a topic is created (CreateTopics) and cannot change"));
    }
    validate(name, value).err().map(|e| e.to_string())
}

/// One line of a topic's configuration as DescribeConfigs shows it.
pub struct EffectiveConfig {
    pub def: &'static ConfigDef,
    pub value: String,
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG) rather than a default.
    pub is_set: bool,
}

impl EffectiveConfig {
    /// The source DescribeConfigs and CreateTopics report.
    pub fn source(&self) -> i8 {
        match (self.is_set, self.def.broker_default) {
            (true, _) => DYNAMIC_TOPIC_CONFIG,
            (false, true) => STATIC_BROKER_CONFIG,
            (false, false) => DEFAULT_CONFIG,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_cannot_change_and_other_keys_follow_kafka() {
        assert!(invalid(crate::storage::batches::LAYOUT_CONFIG, "rows").is_some());
        assert_eq!(invalid("cleanup.policy", "compact"), None);
        assert_eq!(invalid("segment.bytes", "52428800"), None);
        assert!(invalid("segment.bytes", "1").is_some());
        assert!(invalid("no.such.config", "1").is_some());
    }

    #[test]
    fn unset_keys_report_where_their_default_comes_from() {
        let all = effective(&[("retention.bytes".to_owned(), "10".to_owned())]);
        let source = |name: &str| all.iter().find(|c| c.def.name == name).unwrap().source();
        assert_eq!(source("retention.bytes"), DYNAMIC_TOPIC_CONFIG);
        assert_eq!(source("retention.ms"), STATIC_BROKER_CONFIG, "pg_kafka's broker keeps messages by default");
        assert_eq!(source("cleanup.policy"), DEFAULT_CONFIG);
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
        if let Some(value) = value {
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
        // Every key Kafka accepts is stored, as Kafka stores it.
        assert_eq!(
            apply(&[], &[set("segment.bytes", "52428800")], false).unwrap(),
            vec![("segment.bytes".to_owned(), "52428800".to_owned())]
        );
        assert!(apply(&[], &[set("segment.bytes", "1")], false).is_err());
        assert!(apply(&[], &[ConfigChange::Append("retention.ms".into(), "1".into())], false).is_err());
        let appended = apply(&[], &[ConfigChange::Append("cleanup.policy".into(), "delete".into())], false).unwrap();
        assert_eq!(appended, vec![("cleanup.policy".to_owned(), "delete".to_owned())]);
        let subtracted = apply(&appended, &[ConfigChange::Append("cleanup.policy".into(), "compact".into())], false).unwrap();
        assert_eq!(subtracted, vec![("cleanup.policy".to_owned(), "delete,compact".to_owned())]);
    }
}
