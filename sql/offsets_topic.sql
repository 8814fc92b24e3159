-- pg_kafka 0.5.0: __consumer_offsets is served read-only from kafka.consumer_offsets
-- (core/src/storage/offsets_topic.rs). Every commit, by a Kafka client or by SQL, takes the
-- next number of one sequence: its offset in that topic. Part of every fresh install and
-- of the upgrade script from 0.4.0 (with hardening.sql).
CREATE SEQUENCE kafka.offset_commit_numbers AS bigint MINVALUE 0 START WITH 0;
-- Rows committed before the upgrade get numbers in no particular order.
ALTER TABLE kafka.consumer_offsets
    ADD COLUMN commit_number bigint NOT NULL DEFAULT pg_catalog.nextval('kafka.offset_commit_numbers'::pg_catalog.regclass);
COMMENT ON COLUMN kafka.consumer_offsets.commit_number IS
    'The commit''s offset in __consumer_offsets: a new number on every insert and update';

CREATE FUNCTION kafka.number_offset_commit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.commit_number := pg_catalog.nextval('kafka.offset_commit_numbers'::pg_catalog.regclass);
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION kafka.number_offset_commit() FROM PUBLIC;
CREATE TRIGGER number_offset_commit BEFORE UPDATE ON kafka.consumer_offsets
    FOR EACH ROW EXECUTE FUNCTION kafka.number_offset_commit();

CREATE INDEX consumer_offsets_commit_number ON kafka.consumer_offsets (commit_number);

SELECT pg_catalog.pg_extension_config_dump('kafka.offset_commit_numbers', '');
