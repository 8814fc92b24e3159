-- pg_kafka 0.4.0: committed-offset metadata round-trips byte-exact. Kafka strings may hold
-- NUL characters, which a text column cannot: such metadata is kept in metadata_bytes (its
-- UTF-8 bytes) and metadata stays NULL. At most one of the two is set. Part of every fresh
-- install and of the upgrade script from 0.3.0 (with hardening.sql).
ALTER TABLE kafka.consumer_offsets ADD COLUMN metadata_bytes bytea;
ALTER TABLE kafka.consumer_offsets ADD CONSTRAINT consumer_offsets_one_metadata
    CHECK (metadata IS NULL OR metadata_bytes IS NULL);
COMMENT ON COLUMN kafka.consumer_offsets.metadata_bytes IS
    'The commit''s metadata when text cannot hold it (a NUL character), as UTF-8 bytes';
