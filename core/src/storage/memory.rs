//! An in-memory [`Storage`], for tests of handlers and of the bridge without Postgres.

use std::collections::{BTreeMap, HashMap};

use super::offsets_topic::OffsetCommitRecord;
use super::transactions::{AbortedTxn, Durability, OpenTxn, PartitionTransactions, TxnLogChanges, TxnRecord};
use super::{
    batches, is_valid_topic_name, payload_bytes, ActiveProducer, BatchRow, CommittedOffset, LogDirUsage, LoginRole, MessageRows,
    OffsetCommit, PartitionCleaning, ProducerKey, ProducerState, ReadLimit, Storage, StorageError, StorageLayout, StoredRecord, Topic,
    TopicSettings,
};
use crate::security::acl::{AclBinding, AclFilter, Principal};
use uuid::Uuid;

#[derive(Default)]
pub struct MemoryStorage {
    topics: Vec<Topic>,
    /// Topic ids handed out so far (ids are never reused, as with an identity column).
    last_topic_id: i32,
    configs: BTreeMap<i32, Vec<(String, String)>>,
    log_starts: HashMap<(i32, i32), i64>,
    /// group → (topic id, partition) → commit.
    offsets: BTreeMap<String, BTreeMap<(i32, i32), OffsetCommit>>,
    cleaning: HashMap<(i32, i32), PartitionCleaning>,
    last_producer_id: i64,
    /// (group, topic id, partition) → the number of its latest commit.
    commit_numbers: HashMap<(String, i32, i32), i64>,
    next_commit_number: i64,
    producers: HashMap<ProducerKey, ProducerState>,
    transactions: BTreeMap<String, TxnRecord>,
    open_txns: BTreeMap<((i32, i32), i64), OpenTxn>,
    aborted_txns: Vec<AbortedTxn>,
    /// `kafka.cluster_leader`.
    pub leader: Option<i32>,
    /// What `in_sync_standbys` answers (synchronous replication off: `None`).
    pub in_sync: Option<Vec<String>>,
    /// `kafka.cluster_in_sync`, and how many times it was written.
    pub recorded_in_sync: Vec<i32>,
    pub in_sync_records: usize,
    /// Transactions told to commit locally.
    pub local_commits: usize,
    /// Every appended row, in insertion order.
    pub messages: MessageRows,
    /// Every appended batch (batch layout), in insertion order.
    pub batches: Vec<BatchRow>,
    /// When set, `append` fails: lets tests exercise the writer's failure path.
    pub fail_appends: bool,
    /// Rows for this (topic id, partition) are refused as a trigger would refuse them.
    pub refuse_partition: Option<(i32, i32)>,
    /// Partitions whose append lock someone else holds (a SQL session, in tests).
    pub locked_elsewhere: std::collections::HashSet<(i32, i32)>,
    /// How many times a partition's next offset was read from here.
    pub next_offset_probes: usize,
    /// Storage reads of topics (one by name, or all at once), for tests of bounded work.
    pub topic_reads: usize,
    /// Roles by name, as `pg_authid` would hold them.
    pub roles: BTreeMap<String, LoginRole>,
    pub acls: Vec<AclBinding>,
}

impl Storage for MemoryStorage {
    fn all_topics(&mut self) -> Result<Vec<Topic>, StorageError> {
        self.topic_reads += 1;
        let mut topics = self.topics.clone();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    fn topic(&mut self, name: &str) -> Result<Option<Topic>, StorageError> {
        self.topic_reads += 1;
        Ok(self.topics.iter().find(|t| t.name == name).cloned())
    }

    fn create_topic_as(&mut self, name: &str, partitions: i32, layout: StorageLayout) -> Result<Topic, StorageError> {
        if !is_valid_topic_name(name) {
            return Err(StorageError::InvalidTopicName(name.to_owned()));
        }
        if self.topic(name)?.is_some() {
            return Err(StorageError::TopicExists(name.to_owned()));
        }
        self.last_topic_id += 1;
        let topic = Topic {
            id: self.last_topic_id,
            name: name.to_owned(),
            uuid: Uuid::new_v4(),
            partitions,
            settings: TopicSettings::default(),
            layout,
        };
        self.topics.push(topic.clone());
        Ok(topic)
    }

    fn next_offset(&mut self, topic_id: i32, partition: i32) -> Result<i64, StorageError> {
        self.next_offset_probes += 1;
        let m = &self.messages;
        let last = (0..m.len()).filter(|&i| m.topic_ids[i] == topic_id && m.partitions[i] == partition).map(|i| m.offsets[i]).max();
        let last = last.max(self.batches_of(topic_id, partition).map(BatchRow::last_offset).max());
        let log_start = self.log_starts.get(&(topic_id, partition)).copied().unwrap_or(0);
        Ok(last.map_or(0, |offset| offset + 1).max(log_start))
    }

    fn try_lock_partition(&mut self, topic_id: i32, partition: i32) -> Result<bool, StorageError> {
        Ok(!self.locked_elsewhere.contains(&(topic_id, partition)))
    }

    fn append(&mut self, rows: &MessageRows) -> Result<(), StorageError> {
        if self.fail_appends {
            return Err(StorageError::Database { sqlstate: None, message: "appends are failing (test)".into() });
        }
        if (0..rows.len()).any(|i| Some((rows.topic_ids[i], rows.partitions[i])) == self.refuse_partition) {
            return Err(StorageError::Database { sqlstate: Some("P0001".into()), message: "refused by a trigger (test)".into() });
        }
        let m = &mut self.messages;
        for i in 0..rows.len() {
            let duplicate = (0..m.len())
                .any(|j| (m.topic_ids[j], m.partitions[j], m.offsets[j]) == (rows.topic_ids[i], rows.partitions[i], rows.offsets[i]));
            if duplicate {
                return Err(StorageError::Database {
                    sqlstate: Some("23505".into()),
                    message: "duplicate key (topic_id, partition, offset)".into(),
                });
            }
        }
        (0..rows.len()).for_each(|i| m.push_from(rows, i));
        Ok(())
    }

    fn append_batches(&mut self, batches: &[BatchRow]) -> Result<(), StorageError> {
        if self.fail_appends {
            return Err(StorageError::Database { sqlstate: None, message: "appends are failing (test)".into() });
        }
        for batch in batches {
            if self.batches_of(batch.topic_id, batch.partition).any(|b| b.last_offset() == batch.last_offset()) {
                return Err(StorageError::Database {
                    sqlstate: Some("23505".into()),
                    message: "duplicate key (topic_id, partition, last_offset)".into(),
                });
            }
        }
        self.batches.extend_from_slice(batches);
        Ok(())
    }

    fn read_batches(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<bytes::Bytes>, StorageError> {
        let mut found: Vec<&BatchRow> =
            self.batches_of(topic_id, partition).filter(|b| (limit.from..limit.below).contains(&b.last_offset())).collect();
        found.sort_by_key(|b| b.base_offset);
        Ok(limit.take_by(found.into_iter().map(|b| b.bytes.clone()), bytes::Bytes::len))
    }

    fn read(&mut self, topic_id: i32, partition: i32, limit: ReadLimit) -> Result<Vec<StoredRecord>, StorageError> {
        let mut candidates: Vec<StoredRecord> =
            self.rows_of(topic_id, partition).filter(|r| (limit.from..limit.below).contains(&r.offset)).collect();
        candidates.sort_by_key(|r| r.offset);
        Ok(limit.take(candidates))
    }

    fn first_offset(&mut self, topic_id: i32, partition: i32) -> Result<Option<i64>, StorageError> {
        let first = self.rows_of(topic_id, partition).map(|r| r.offset).min();
        Ok(first.max(self.log_starts.get(&(topic_id, partition)).copied()))
    }

    fn offset_for_timestamp(&mut self, topic_id: i32, partition: i32, timestamp_ms: i64) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self.rows_of(topic_id, partition).filter(|r| r.timestamp_ms >= timestamp_ms).map(|r| (r.offset, r.timestamp_ms)).min())
    }

    fn max_timestamp(&mut self, topic_id: i32, partition: i32) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self.rows_of(topic_id, partition).map(|r| (r.timestamp_ms, -r.offset)).max().map(|(timestamp, negated)| (-negated, timestamp)))
    }

    fn delete_topic(&mut self, topic_id: i32) -> Result<(), StorageError> {
        self.topics.retain(|t| t.id != topic_id);
        self.retain_rows(|topic, _, _| topic != topic_id);
        self.batches.retain(|b| b.topic_id != topic_id);
        self.configs.remove(&topic_id);
        self.log_starts.retain(|&(topic, _), _| topic != topic_id);
        for group in self.offsets.values_mut() {
            group.retain(|&(topic, _), _| topic != topic_id);
        }
        self.offsets.retain(|_, group| !group.is_empty());
        self.producers.retain(|&(_, topic, _), _| topic != topic_id);
        Ok(())
    }

    fn set_partition_count(&mut self, topic_id: i32, partitions: i32) -> Result<(), StorageError> {
        self.topics.iter_mut().filter(|t| t.id == topic_id).for_each(|t| t.partitions = partitions);
        Ok(())
    }

    fn topic_configs(&mut self, topic_id: i32) -> Result<Vec<(String, String)>, StorageError> {
        Ok(self.configs.get(&topic_id).cloned().unwrap_or_default())
    }

    fn replace_topic_configs(&mut self, topic_id: i32, configs: &[(String, String)]) -> Result<(), StorageError> {
        let mut configs = configs.to_vec();
        configs.sort();
        let settings = TopicSettings::from_stored(&configs);
        self.topics.iter_mut().filter(|t| t.id == topic_id).for_each(|t| t.settings = settings.clone());
        self.configs.insert(topic_id, configs);
        Ok(())
    }

    fn delete_records_before(&mut self, topic_id: i32, partition: i32, offset: i64) -> Result<(), StorageError> {
        let start = self.log_starts.entry((topic_id, partition)).or_insert(0);
        *start = (*start).max(offset);
        let start = *start;
        self.retain_rows(|topic, p, o| !(topic == topic_id && p == partition && o < start));
        self.batches.retain(|b| !(b.topic_id == topic_id && b.partition == partition && b.last_offset() < start));
        self.aborted_txns.retain(|t| !(t.partition == (topic_id, partition) && t.last_offset < start));
        Ok(())
    }

    fn first_offset_within_bytes(&mut self, topic_id: i32, partition: i32, bytes: i64, from: i64) -> Result<Option<i64>, StorageError> {
        let mut rows: Vec<StoredRecord> = self.rows_of(topic_id, partition).filter(|r| r.offset >= from).collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.offset));
        let mut kept = 0;
        for row in &rows {
            kept += payload_bytes(row);
            if kept as i64 > bytes {
                return Ok(Some(row.offset + 1));
            }
        }
        Ok(None)
    }

    fn cleaning_state(&mut self, topic_id: i32, partition: i32) -> Result<Option<PartitionCleaning>, StorageError> {
        Ok(self.cleaning.get(&(topic_id, partition)).cloned())
    }

    fn save_cleaning_state(&mut self, topic_id: i32, partition: i32, state: &PartitionCleaning) -> Result<(), StorageError> {
        self.cleaning.insert((topic_id, partition), state.clone());
        Ok(())
    }

    fn delete_messages(&mut self, topic_id: i32, partition: i32, offsets: &[i64]) -> Result<(), StorageError> {
        self.retain_rows(|topic, p, o| !(topic == topic_id && p == partition && offsets.binary_search(&o).is_ok()));
        Ok(())
    }

    fn replace_batches(&mut self, topic_id: i32, partition: i32, changes: &[(i64, Option<BatchRow>)]) -> Result<(), StorageError> {
        for (last_offset, replacement) in changes {
            let at =
                self.batches.iter().position(|b| b.topic_id == topic_id && b.partition == partition && b.last_offset() == *last_offset);
            match (at, replacement) {
                (Some(at), Some(row)) => self.batches[at] = row.clone(),
                (Some(at), None) => {
                    self.batches.remove(at);
                }
                (None, _) => {}
            }
        }
        Ok(())
    }

    fn commit_offsets(&mut self, group: &str, offsets: &[OffsetCommit]) -> Result<(), StorageError> {
        let stored = self.offsets.entry(group.to_owned()).or_default();
        for commit in offsets {
            stored.insert((commit.topic_id, commit.partition), commit.clone());
            self.commit_numbers.insert((group.to_owned(), commit.topic_id, commit.partition), self.next_commit_number);
            self.next_commit_number += 1;
        }
        Ok(())
    }

    fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, StorageError> {
        let Some(stored) = self.offsets.get(group) else { return Ok(Vec::new()) };
        let mut offsets: Vec<CommittedOffset> = stored
            .values()
            .filter_map(|c| {
                let topic = self.topics.iter().find(|t| t.id == c.topic_id)?;
                Some(CommittedOffset {
                    topic: topic.name.clone(),
                    partition: c.partition,
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone(),
                })
            })
            .collect();
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }

    fn offset_groups(&mut self) -> Result<Vec<String>, StorageError> {
        Ok(self.offsets.keys().cloned().collect())
    }

    fn delete_group_offsets(&mut self, groups: &[String]) -> Result<Vec<String>, StorageError> {
        Ok(groups.iter().filter(|g| self.offsets.remove(g.as_str()).is_some()).cloned().collect())
    }

    fn delete_partition_offsets(&mut self, group: &str, partitions: &[(i32, i32)]) -> Result<(), StorageError> {
        if let Some(stored) = self.offsets.get_mut(group) {
            partitions.iter().for_each(|key| drop(stored.remove(key)));
        }
        Ok(())
    }

    fn offset_commit_records(&mut self, from: i64, below: i64, limit: usize) -> Result<Vec<OffsetCommitRecord>, StorageError> {
        let mut records: Vec<OffsetCommitRecord> = self
            .offsets
            .iter()
            .flat_map(|(group, commits)| commits.values().map(move |c| (group, c)))
            .filter_map(|(group, c)| {
                let number = *self.commit_numbers.get(&(group.clone(), c.topic_id, c.partition))?;
                let topic = self.topics.iter().find(|t| t.id == c.topic_id)?.name.clone();
                let metadata = bytes::Bytes::from(c.metadata.clone().unwrap_or_default());
                let (offset, leader_epoch, partition) = (c.offset, c.leader_epoch, c.partition);
                Some(OffsetCommitRecord {
                    number,
                    group: group.clone(),
                    topic,
                    partition,
                    offset,
                    leader_epoch,
                    metadata,
                    commit_time_ms: 1,
                })
            })
            .filter(|r| (from..below).contains(&r.number))
            .collect();
        records.sort_by_key(|r| r.number);
        records.truncate(limit);
        Ok(records)
    }

    fn offset_commit_range(&mut self) -> Result<(Option<i64>, i64), StorageError> {
        let live = |(group, commits): (&String, &BTreeMap<(i32, i32), OffsetCommit>)| {
            commits.keys().filter_map(|(t, p)| self.commit_numbers.get(&(group.clone(), *t, *p))).min().copied()
        };
        Ok((self.offsets.iter().filter_map(live).min(), self.next_commit_number))
    }

    fn retention_starts(&mut self, now_ms: i64) -> Result<Vec<(i32, i32, i64)>, StorageError> {
        let mut starts = Vec::new();
        for topic in self.topics.clone() {
            let configs = self.configs.get(&topic.id).cloned().unwrap_or_default();
            let limit = |name: &str| configs.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.parse::<i64>().ok()).unwrap_or(-1);
            let (retention_ms, retention_bytes) = (limit("retention.ms"), limit("retention.bytes"));
            for partition in 0..topic.partitions {
                let Some(start) = self.first_offset(topic.id, partition)? else { continue };
                let high = self.next_offset(topic.id, partition)?;
                let mut rows: Vec<StoredRecord> = self.rows_of(topic.id, partition).collect();
                rows.sort_by_key(|r| r.offset);
                let mut target = start;
                if retention_ms >= 0 {
                    let oldest_kept = now_ms.saturating_sub(retention_ms);
                    target = target.max(rows.iter().find(|r| r.timestamp_ms >= oldest_kept).map_or(high, |r| r.offset));
                }
                if retention_bytes >= 0 {
                    let mut kept = 0;
                    for row in rows.iter().rev() {
                        kept += payload_bytes(row);
                        if kept as i64 > retention_bytes {
                            target = target.max(row.offset + 1);
                            break;
                        }
                    }
                }
                if target > start {
                    starts.push((topic.id, partition, target));
                }
            }
        }
        Ok(starts)
    }

    fn next_producer_id(&mut self) -> Result<i64, StorageError> {
        self.last_producer_id += 1;
        Ok(self.last_producer_id)
    }

    fn producer_state(&mut self, key: ProducerKey) -> Result<Option<ProducerState>, StorageError> {
        Ok(self.producers.get(&key).cloned())
    }

    fn save_producer_states(&mut self, states: &[(ProducerKey, ProducerState)]) -> Result<(), StorageError> {
        for (key, state) in states {
            self.producers.insert(*key, state.clone());
        }
        Ok(())
    }

    fn active_producers(&mut self, partitions: &[(i32, i32)]) -> Result<Vec<ActiveProducer>, StorageError> {
        let mut found: Vec<ActiveProducer> = self
            .producers
            .iter()
            .filter(|((_, t, p), _)| partitions.contains(&(*t, *p)))
            .filter_map(|(&(producer_id, t, p), state)| {
                let last = state.batches.back()?;
                let last_sequence = last.last_sequence;
                Some(ActiveProducer { partition: (t, p), producer_id, epoch: state.epoch, last_sequence, last_timestamp_ms: 1 })
            })
            .collect();
        found.sort_by_key(|producer| (producer.partition, producer.producer_id));
        found.truncate(super::DESCRIBED_PRODUCERS_LIMIT);
        Ok(found)
    }

    fn transactions(&mut self) -> Result<Vec<TxnRecord>, StorageError> {
        Ok(self.transactions.values().cloned().collect())
    }

    fn save_transaction(&mut self, record: &TxnRecord, _: Durability) -> Result<(), StorageError> {
        self.transactions.insert(record.transactional_id.clone(), record.clone());
        Ok(())
    }

    fn partition_transactions(&mut self, key: (i32, i32), from: i64, below: i64) -> Result<PartitionTransactions, StorageError> {
        let open = self.open_txns.values().filter(|t| t.partition == key).map(|t| t.first_offset).min();
        let aborted =
            self.aborted_txns.iter().filter(|t| t.partition == key && t.last_offset >= from && t.first_offset < below).copied().collect();
        Ok((open, aborted))
    }

    fn expire_transaction(&mut self, record: &TxnRecord) -> Result<(), StorageError> {
        let same =
            |r: &TxnRecord| (r.producer_id, r.producer_epoch, r.state.is_open()) == (record.producer_id, record.producer_epoch, false);
        if self.transactions.get(&record.transactional_id).is_some_and(same) {
            self.transactions.remove(&record.transactional_id);
        }
        Ok(())
    }

    fn txn_log_state(&mut self) -> Result<(Vec<OpenTxn>, Vec<AbortedTxn>), StorageError> {
        Ok((self.open_txns.values().copied().collect(), self.aborted_txns.clone()))
    }

    fn save_txn_log(&mut self, changes: &TxnLogChanges) -> Result<(), StorageError> {
        for txn in &changes.begun {
            self.open_txns.entry((txn.partition, txn.producer_id)).or_insert(*txn);
        }
        for key in &changes.ended {
            self.open_txns.remove(key);
        }
        self.aborted_txns.extend(changes.aborted.iter().copied());
        Ok(())
    }

    fn log_dir_usage(&mut self) -> Result<LogDirUsage, StorageError> {
        let m = &self.messages;
        let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, bytes::Bytes::len);
        let bytes: usize = m.keys.iter().chain(&m.values).chain(&m.headers).map(len).sum::<usize>()
            + self.batches.iter().map(|b| b.bytes.len()).sum::<usize>();
        let rows = m.len() + self.batches.iter().map(|b| b.record_count as usize).sum::<usize>();
        Ok(LogDirUsage { path: "memory".into(), table_bytes: bytes as i64, table_rows: rows as i64, volume_bytes: -1, usable_bytes: -1 })
    }

    fn batch_bytes_per_record(&mut self, topic_id: i32, partition: i32) -> Result<Option<f64>, StorageError> {
        let mut newest: Vec<&BatchRow> = self.batches_of(topic_id, partition).collect();
        newest.sort_by_key(|b| std::cmp::Reverse(b.base_offset));
        newest.truncate(100);
        let records: i64 = newest.iter().map(|b| i64::from(b.record_count)).sum();
        let bytes: usize = newest.iter().map(|b| b.bytes.len()).sum();
        Ok((records > 0).then(|| bytes as f64 / records as f64))
    }

    fn login_role(&mut self, name: &str) -> Result<Option<LoginRole>, StorageError> {
        Ok(self.roles.get(name).cloned())
    }

    fn principals(&mut self, names: &[String]) -> Result<Vec<Principal>, StorageError> {
        Ok(names.iter().filter_map(|n| self.roles.get(n)).map(|r| r.principal.clone()).collect())
    }

    fn acls(&mut self) -> Result<Vec<AclBinding>, StorageError> {
        Ok(self.acls.clone())
    }

    fn cluster_leader(&mut self) -> Result<Option<i32>, StorageError> {
        Ok(self.leader)
    }

    fn claim_leadership(&mut self, node_id: i32) -> Result<(), StorageError> {
        self.leader = Some(node_id);
        Ok(())
    }

    fn in_sync_standbys(&mut self) -> Result<Option<Vec<String>>, StorageError> {
        Ok(self.in_sync.clone())
    }

    fn copies_of_commit(&mut self, _commit_end: u64) -> Result<i64, StorageError> {
        Ok(1 + self.in_sync.as_ref().map_or(0, |names| names.len() as i64))
    }

    fn recorded_in_sync(&mut self) -> Result<Vec<i32>, StorageError> {
        Ok(self.recorded_in_sync.clone())
    }

    fn record_in_sync(&mut self, node_ids: &[i32]) -> Result<(), StorageError> {
        self.recorded_in_sync = node_ids.to_vec();
        self.in_sync_records += 1;
        Ok(())
    }

    fn commit_locally(&mut self) -> Result<(), StorageError> {
        self.local_commits += 1;
        Ok(())
    }

    fn create_acls(&mut self, acls: &[AclBinding]) -> Result<(), StorageError> {
        for acl in acls {
            if !self.acls.contains(acl) {
                self.acls.push(acl.clone());
            }
        }
        Ok(())
    }

    fn delete_acls(&mut self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, StorageError> {
        let deleted = filters.iter().map(|f| self.acls.iter().filter(|a| f.matches(a)).cloned().collect()).collect();
        self.acls.retain(|a| !filters.iter().any(|f| f.matches(a)));
        Ok(deleted)
    }
}

impl MemoryStorage {
    /// Keeps the message rows for which `keep(topic id, partition, offset)` holds.
    fn retain_rows(&mut self, keep: impl Fn(i32, i32, i64) -> bool) {
        let m = std::mem::take(&mut self.messages);
        for i in 0..m.len() {
            if keep(m.topic_ids[i], m.partitions[i], m.offsets[i]) {
                self.messages.push_from(&m, i);
            }
        }
    }

    fn batches_of(&self, topic_id: i32, partition: i32) -> impl Iterator<Item = &BatchRow> + '_ {
        self.batches.iter().filter(move |b| b.topic_id == topic_id && b.partition == partition)
    }

    /// A partition's messages: its rows, and the records of its batches at or after the
    /// log start (a batch the log start is inside of keeps its earlier records).
    fn rows_of(&self, topic_id: i32, partition: i32) -> impl Iterator<Item = StoredRecord> + '_ {
        let m = &self.messages;
        let log_start = self.log_starts.get(&(topic_id, partition)).copied().unwrap_or(0);
        let unpacked: Vec<StoredRecord> = self
            .batches_of(topic_id, partition)
            .flat_map(|b| batches::unpack(&b.bytes).expect("stored batches decode"))
            .filter(|r| r.offset >= log_start)
            .collect();
        (0..m.len())
            .filter(move |&i| m.topic_ids[i] == topic_id && m.partitions[i] == partition)
            .map(move |i| StoredRecord {
                offset: m.offsets[i],
                timestamp_ms: m.timestamps_ms[i],
                key: m.keys[i].clone(),
                value: m.values[i].clone(),
                headers: m.headers[i].clone(),
                txn: m.txn(i),
            })
            .chain(unpacked)
    }
}
