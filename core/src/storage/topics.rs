//! The one cache of topics: names, ids, partition counts and the settings Produce checks.
//!
//! Handlers resolve the topics a request names here (a storage round trip only on a
//! miss), and Produce hands the resolved [`Topic`] to the group-commit writer, so the
//! writer never looks topics up by name itself. One invalidation path: the storage job
//! that deletes a topic or changes its configs calls [`TopicCache::invalidate`] on the
//! storage thread, which empties the cache and moves its generation. The writer compares
//! the generation an append was resolved at with the current one and re-reads the topic
//! when they differ, so no row is ever written under a deleted topic id.
//!
//! Entries are also dropped by [`TopicCache::expire`] on every partition refresh, so
//! configs changed with SQL take effect within `pg_kafka.refresh_interval_ms`; a request
//! naming a partition beyond the cached count reloads its topic (it may have grown).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use uuid::Uuid;

use super::bridge::{StorageCallError, StorageClient};
use super::{offsets_topic, Storage, StorageError, Topic};

/// A topic as a request names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(String),
    Id(Uuid),
}

#[derive(Clone, Default)]
pub struct TopicCache {
    inner: Arc<RwLock<Entries>>,
}

#[derive(Default)]
struct Entries {
    by_name: HashMap<String, Topic>,
    /// Moves on every [`TopicCache::invalidate`].
    generation: u64,
}

/// What [`TopicCache::resolve`] found: each wanted topic (`None` when it does not exist),
/// and the cache generation the answers belong to.
#[derive(Debug, Default)]
pub struct Resolved {
    pub topics: HashMap<TopicRef, Option<Topic>>,
    pub generation: u64,
}

impl Resolved {
    /// What was found for `topic`: `Some(None)` when it does not exist, `None` when it
    /// was not asked for.
    pub fn get(&self, topic: &TopicRef) -> Option<&Option<Topic>> {
        self.topics.get(topic)
    }
}

impl TopicCache {
    /// Resolves each `(topic, partition)`: `Some(topic)` when it exists (the partition may
    /// still be out of range), `None` when it does not. Misses are looked up in one storage
    /// job, each distinct topic once; hits cost nothing.
    pub async fn resolve(&self, storage: &StorageClient, wanted: &[(TopicRef, i32)]) -> Result<Resolved, StorageCallError> {
        let mut resolved = Resolved::default();
        let mut missing = Vec::new();
        let mut asked = HashSet::new();
        {
            let entries = self.inner.read();
            resolved.generation = entries.generation;
            for (topic, partition) in wanted {
                match entries.cached(topic) {
                    Some(t) if *partition < t.partitions => {
                        resolved.topics.insert(topic.clone(), Some(t.clone()));
                    }
                    _ if asked.insert(topic) => missing.push(topic.clone()),
                    _ => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(resolved);
        }
        let cache = self.clone();
        let (generation, loaded) = storage
            .call(move |storage| -> Result<_, StorageError> {
                // Read on the storage thread, where invalidations happen: the generation
                // and the rows belong together.
                let generation = cache.generation();
                Ok((generation, load(storage, missing)?))
            })
            .await??;
        let mut entries = self.inner.write();
        let current = entries.generation == generation;
        for (wanted, topic) in loaded {
            if let (Some(topic), true) = (&topic, current) {
                entries.by_name.insert(topic.name.clone(), topic.clone());
            }
            resolved.topics.insert(wanted, topic);
        }
        // Hits and loads may straddle an invalidation: report the older generation, so
        // the writer re-checks.
        resolved.generation = resolved.generation.min(generation);
        Ok(resolved)
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.inner.read().generation
    }

    /// A topic was deleted or its configs changed: forget every topic and move the
    /// generation. Call inside the storage job that makes the change.
    pub fn invalidate(&self) {
        let mut entries = self.inner.write();
        entries.generation += 1;
        entries.by_name.clear();
    }

    /// Re-reads every cached topic (the periodic refresh, on the storage thread: configs
    /// and partition counts may have been changed with SQL, topics deleted). Topics stay
    /// cached meanwhile, so a Fetch never needs the storage thread just because the
    /// cache grew old: reads do not wait behind a group commit for a topic lookup.
    /// The generation stays: nothing changed through pg_kafka.
    pub fn refresh(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        if self.inner.read().by_name.is_empty() {
            return Ok(());
        }
        let all = storage.all_topics()?;
        let mut entries = self.inner.write();
        let fresh = all.into_iter().filter(|t| entries.by_name.contains_key(&t.name)).map(|t| (t.name.clone(), t)).collect();
        entries.by_name = fresh;
        Ok(())
    }
}

impl Entries {
    fn cached(&self, topic: &TopicRef) -> Option<&Topic> {
        match topic {
            TopicRef::Name(name) => self.by_name.get(name),
            TopicRef::Id(id) => self.by_name.values().find(|t| t.uuid == *id),
        }
    }
}

/// Looks each topic up in storage; all topics are read at most once (for ids).
fn load(storage: &mut dyn Storage, wanted: Vec<TopicRef>) -> Result<Vec<(TopicRef, Option<Topic>)>, StorageError> {
    let found = look_up(storage, &wanted)?;
    Ok(wanted.into_iter().zip(found).collect())
}

/// Named topics looked up one by one; a request naming more (or any by id) reads every
/// topic once instead: a million distinct unknown names cost one query, not a million.
pub const LOOKUPS_PER_REQUEST: usize = 64;

/// Each wanted topic, `None` where it does not exist, in storage work bounded whatever
/// the client names: at most [`LOOKUPS_PER_REQUEST`] lookups, or one read of every topic.
/// Storage thread.
pub fn look_up(storage: &mut dyn Storage, wanted: &[TopicRef]) -> Result<Vec<Option<Topic>>, StorageError> {
    let by_name_only = wanted.len() <= LOOKUPS_PER_REQUEST && wanted.iter().all(|r| matches!(r, TopicRef::Name(_)));
    if by_name_only {
        return wanted.iter().map(|r| if let TopicRef::Name(name) = r { named(storage, name) } else { Ok(None) }).collect();
    }
    let all = offsets_topic::with_internal(storage.all_topics()?);
    let by_name: HashMap<&str, &Topic> = all.iter().map(|t| (t.name.as_str(), t)).collect();
    let by_id: HashMap<Uuid, &Topic> = all.iter().map(|t| (t.uuid, t)).collect();
    Ok(wanted
        .iter()
        .map(|r| match r {
            TopicRef::Name(name) => by_name.get(name.as_str()).map(|t| (*t).clone()),
            TopicRef::Id(id) => by_id.get(id).map(|t| (*t).clone()),
        })
        .collect())
}

/// The topic called `name`: a stored one, or the internal `__consumer_offsets`.
fn named(storage: &mut dyn Storage, name: &str) -> Result<Option<Topic>, StorageError> {
    if name == offsets_topic::NAME {
        return Ok(Some(offsets_topic::topic()));
    }
    storage.topic(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bridge::spawn_for_tests;
    use crate::storage::memory::MemoryStorage;

    #[tokio::test]
    async fn resolves_names_and_ids_and_caches_what_exists() {
        let mut memory = MemoryStorage::default();
        let t = memory.create_topic("t", 2).unwrap();
        let storage = spawn_for_tests(memory);
        let cache = TopicCache::default();
        let wanted = [(TopicRef::Name("t".into()), 1), (TopicRef::Id(t.uuid), 0), (TopicRef::Name("nope".into()), 0)];
        let found = cache.resolve(&storage, &wanted).await.unwrap();
        assert_eq!(found.topics[&TopicRef::Name("t".into())].as_ref(), Some(&t));
        assert_eq!(found.topics[&TopicRef::Id(t.uuid)].as_ref(), Some(&t));
        assert_eq!(found.topics[&TopicRef::Name("nope".into())], None);
        assert_eq!(cache.inner.read().cached(&TopicRef::Id(t.uuid)), Some(&t));
    }

    /// The periodic refresh keeps cached topics, with what SQL changed, and drops the
    /// deleted ones, without moving the generation.
    #[test]
    fn a_refresh_rereads_cached_topics_in_place() {
        let mut memory = MemoryStorage::default();
        let t = memory.create_topic("t", 1).unwrap();
        let gone = memory.create_topic("gone", 1).unwrap();
        memory.create_topic("uncached", 1).unwrap();
        let cache = TopicCache::default();
        for topic in [&t, &gone] {
            cache.inner.write().by_name.insert(topic.name.clone(), topic.clone());
        }
        let before = cache.generation();
        memory.set_partition_count(t.id, 3).unwrap();
        memory.delete_topic(gone.id).unwrap();
        cache.refresh(&mut memory).unwrap();
        let entries = cache.inner.read();
        assert_eq!(entries.by_name.get("t").map(|t| t.partitions), Some(3));
        assert!(!entries.by_name.contains_key("gone") && !entries.by_name.contains_key("uncached"));
        assert_eq!(entries.generation, before);
    }

    #[tokio::test]
    async fn invalidation_empties_the_cache_and_moves_the_generation() {
        let mut memory = MemoryStorage::default();
        memory.create_topic("t", 1).unwrap();
        let storage = spawn_for_tests(memory);
        let cache = TopicCache::default();
        let wanted = [(TopicRef::Name("t".into()), 0)];
        let before = cache.resolve(&storage, &wanted).await.unwrap().generation;
        cache.invalidate();
        assert!(cache.inner.read().by_name.is_empty());
        assert_eq!(cache.resolve(&storage, &wanted).await.unwrap().generation, before + 1);
    }
}
