//! The network side's cache of topics, so that Fetch and ListOffsets can resolve names and
//! topic ids without a storage round trip on every poll.
//!
//! Entries are loaded from storage on a miss, and again when a request names a partition
//! beyond the cached count (the topic may have grown). Topics are never renamed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use uuid::Uuid;

use crate::storage::bridge::StorageClient;
use crate::storage::Topic;

/// A topic as a request names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Clone, Default)]
pub struct TopicCache {
    by_name: Arc<RwLock<HashMap<String, Topic>>>,
}

/// Storage could not be asked; the handler answers with a storage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LookupFailed(pub String);

impl TopicCache {
    /// Resolves each `(topic, partition)`: `Some(topic)` when it exists (the partition may
    /// still be out of range), `None` when it does not. Misses are looked up in one storage
    /// job; hits cost nothing.
    pub async fn resolve(
        &self,
        storage: &StorageClient,
        wanted: &[(TopicRef, i32)],
    ) -> Result<HashMap<TopicRef, Option<Topic>>, LookupFailed> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for (topic, partition) in wanted {
            match self.cached(topic) {
                Some(t) if *partition < t.partitions => {
                    found.insert(topic.clone(), Some(t));
                }
                _ if !missing.contains(topic) => missing.push(topic.clone()),
                _ => {}
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = storage
            .call(move |storage| -> Result<Vec<(TopicRef, Option<Topic>)>, String> {
                let mut all = None;
                missing
                    .into_iter()
                    .map(|wanted| {
                        let topic = match &wanted {
                            TopicRef::Name(name) => storage.topic(name).map_err(|e| e.to_string())?,
                            TopicRef::Id(id) => {
                                if all.is_none() {
                                    all = Some(storage.all_topics().map_err(|e| e.to_string())?);
                                }
                                all.as_ref().and_then(|all| all.iter().find(|t| t.uuid == *id).cloned())
                            }
                        };
                        Ok((wanted, topic))
                    })
                    .collect()
            })
            .await
            .map_err(|e| LookupFailed(e.to_string()))?
            .map_err(LookupFailed)?;
        for (wanted, topic) in loaded {
            if let Some(topic) = &topic {
                self.by_name.write().insert(topic.name.clone(), topic.clone());
            }
            found.insert(wanted, topic);
        }
        Ok(found)
    }

    /// Drops a topic from the cache (deleted, or its configs changed).
    pub fn forget(&self, name: &str) {
        self.by_name.write().remove(name);
    }

    fn cached(&self, topic: &TopicRef) -> Option<Topic> {
        let map = self.by_name.read();
        match topic {
            TopicRef::Name(name) => map.get(name).cloned(),
            TopicRef::Id(id) => map.values().find(|t| t.uuid == *id).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::testing::broker_with_writer;

    #[tokio::test]
    async fn resolves_names_and_ids_and_caches_what_exists() {
        let broker = broker_with_writer(2);
        let cache = TopicCache::default();
        let t = broker.storage.call(|s| s.topic("t")).await.unwrap().unwrap().unwrap();
        let wanted = [
            (TopicRef::Name("t".into()), 1),
            (TopicRef::Id(t.uuid), 0),
            (TopicRef::Name("nope".into()), 0),
        ];
        let found = cache.resolve(&broker.storage, &wanted).await.unwrap();
        assert_eq!(found[&TopicRef::Name("t".into())].as_ref(), Some(&t));
        assert_eq!(found[&TopicRef::Id(t.uuid)].as_ref(), Some(&t));
        assert_eq!(found[&TopicRef::Name("nope".into())], None);
        assert_eq!(cache.cached(&TopicRef::Id(t.uuid)), Some(t));
    }
}
