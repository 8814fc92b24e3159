-- One message from kafka.produce() into a batch-layout topic: a batch of one record,
-- its offset decided under the partition's append lock.
INSERT INTO kafka.batches (topic_id, partition, base_offset, last_offset, record_count, max_timestamp,
                           producer_id, producer_epoch, base_sequence, batch)
VALUES ($1, $2, $3, $3, 1, $4, -1, -1, -1, $5)
