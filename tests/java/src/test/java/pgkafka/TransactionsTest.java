package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.junit.jupiter.api.Test;

/**
 * Transactions with Kafka's own Java client (Transactions V2, KIP-890, as the broker finalizes
 * transaction.version 2; V1 when it is set to 1): commit and
 * abort seen by read_committed and read_uncommitted consumers, an open transaction holding
 * read_committed back, zombie fencing, consume-transform-produce with offsets in the
 * transaction, a timed-out transaction aborted by the coordinator. Topics in the batch layout
 * here, in the row layout in {@link RowLayoutTransactionsTest}.
 */
class TransactionsTest {
    /** The configs of the topics the tests create: their storage layout. */
    protected Map<String, String> layout() {
        return Map.of("pg_kafka.storage", "batches");
    }

    private static KafkaProducer<String, String> transactional(String id, Map<String, String> more) {
        Map<String, String> props = new HashMap<>(Map.of("transactional.id", id, "linger.ms", "0"));
        props.putAll(more);
        KafkaProducer<String, String> producer = Cluster.producer(props);
        producer.initTransactions();
        return producer;
    }

    private static KafkaConsumer<String, String> consumer(String isolation) {
        return Cluster.consumer(null, Map.of("isolation.level", isolation));
    }

    private static List<String> values(List<ConsumerRecord<String, String>> records) {
        return records.stream().map(ConsumerRecord::value).toList();
    }

    private static List<String> readValues(String topic, String isolation) {
        try (KafkaConsumer<String, String> consumer = consumer(isolation)) {
            return values(Cluster.readAll(consumer, topic));
        }
    }

    private static void send(KafkaProducer<String, String> producer, String topic, String prefix, int n) {
        for (int i = 0; i < n; i++) {
            producer.send(new ProducerRecord<>(topic, 0, "k" + i, prefix + i));
        }
    }

    private static List<String> numbered(String prefix, int n) {
        List<String> values = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            values.add(prefix + i);
        }
        return values;
    }

    @Test
    void readCommittedSeesCommittedTransactionsOnlyAndReadUncommittedSeesAll() throws Exception {
        String topic = Cluster.uniqueTopic("txn-commit-abort");
        Cluster.createTopic(topic, 1, layout());
        String id = "txn-" + UUID.randomUUID();
        try (KafkaProducer<String, String> producer = transactional(id, Map.of())) {
            producer.beginTransaction();
            send(producer, topic, "a", 10);
            producer.commitTransaction();
            producer.beginTransaction();
            send(producer, topic, "b", 5);
            producer.flush();
            producer.abortTransaction();
            producer.beginTransaction();
            send(producer, topic, "c", 3);
            producer.commitTransaction();
        }
        List<String> committed = new ArrayList<>(numbered("a", 10));
        committed.addAll(numbered("c", 3));
        assertEquals(committed, readValues(topic, "read_committed"));
        List<String> all = new ArrayList<>(numbered("a", 10));
        all.addAll(numbered("b", 5));
        all.addAll(numbered("c", 3));
        assertEquals(all, readValues(topic, "read_uncommitted"), "aborted records stay in the log, as in Kafka");
        assertEquals("CompleteCommit|", Cluster.psql("SELECT state || '|' || array_to_string(partitions, ',') FROM kafka.transactions "
                + "WHERE transactional_id = '" + id + "'"));
        // 10 + marker + 5 + marker + 3 + marker
        assertEquals("21", Cluster.psql("SELECT kafka.high_watermark(t.id, 0) FROM kafka.topics t WHERE t.name = '" + topic + "'"));
        assertEquals("13", Cluster.psql("SELECT count(*) FROM kafka.topic_messages WHERE topic = '" + topic + "'"),
                "SQL reads records, not markers");
        // DeleteRecords past the aborted transaction's marker (offset 16) forgets its range.
        String aborted = "SELECT count(*) FROM kafka.aborted_transactions a JOIN kafka.topics t ON t.id = a.topic_id "
                + "WHERE t.name = '" + topic + "'";
        assertEquals("1", Cluster.psql(aborted));
        try (Admin admin = Cluster.admin()) {
            admin.deleteRecords(Map.of(new TopicPartition(topic, 0), org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(17)))
                    .all().get(30, TimeUnit.SECONDS);
        }
        assertEquals("0", Cluster.psql(aborted), "no read reaches the aborted range again");
        assertEquals(numbered("c", 3), readValues(topic, "read_committed"));
    }

    @Test
    void anOpenTransactionHoldsReadCommittedConsumersAtItsFirstOffset() throws Exception {
        String topic = Cluster.uniqueTopic("txn-open");
        Cluster.createTopic(topic, 1, layout());
        TopicPartition partition = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> producer = transactional("txn-" + UUID.randomUUID(), Map.of());
                Admin admin = Cluster.admin()) {
            producer.beginTransaction();
            send(producer, topic, "a", 4);
            producer.commitTransaction();
            producer.beginTransaction();
            send(producer, topic, "b", 6);
            producer.flush();
            ListOffsetsOptions committed = new ListOffsetsOptions(IsolationLevel.READ_COMMITTED);
            long stable = admin.listOffsets(Map.of(partition, OffsetSpec.latest()), committed).all().get(30, TimeUnit.SECONDS).get(partition).offset();
            long high = admin.listOffsets(Map.of(partition, OffsetSpec.latest())).all().get(30, TimeUnit.SECONDS).get(partition).offset();
            assertEquals(5, stable, "the open transaction's first offset (4 records and a marker before it)");
            assertEquals(11, high);
            try (KafkaConsumer<String, String> consumer = consumer("read_committed")) {
                consumer.assign(List.of(partition));
                consumer.seekToBeginning(List.of(partition));
                List<String> seen = new ArrayList<>();
                long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(3);
                while (System.nanoTime() < until) {
                    consumer.poll(Duration.ofMillis(200)).forEach(r -> seen.add(r.value()));
                }
                assertEquals(numbered("a", 4), seen, "nothing of the open transaction");
                producer.commitTransaction();
                until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (seen.size() < 10 && System.nanoTime() < until) {
                    consumer.poll(Duration.ofMillis(200)).forEach(r -> seen.add(r.value()));
                }
                List<String> want = new ArrayList<>(numbered("a", 4));
                want.addAll(numbered("b", 6));
                assertEquals(want, seen, "the rest once it committed");
            }
        }
    }

    @Test
    void aSecondProducerWithTheSameTransactionalIdFencesTheFirst() throws Exception {
        String topic = Cluster.uniqueTopic("txn-fence");
        Cluster.createTopic(topic, 1, layout());
        String id = "txn-" + UUID.randomUUID();
        try (KafkaProducer<String, String> zombie = transactional(id, Map.of())) {
            zombie.beginTransaction();
            send(zombie, topic, "zombie", 3);
            zombie.flush();
            try (KafkaProducer<String, String> successor = transactional(id, Map.of())) {
                // As from Kafka: its produce gets INVALID_PRODUCER_EPOCH (abortable in the client),
                // its abort PRODUCER_FENCED (fatal).
                assertThrows(KafkaException.class, () -> {
                    send(zombie, topic, "late", 1);
                    zombie.commitTransaction();
                });
                KafkaException fenced = assertThrows(KafkaException.class, zombie::abortTransaction);
                assertTrue(fenced instanceof ProducerFencedException || fenced.getCause() instanceof ProducerFencedException,
                        "fenced: " + fenced);
                successor.beginTransaction();
                send(successor, topic, "next", 2);
                successor.commitTransaction();
            }
        }
        assertEquals(numbered("next", 2), readValues(topic, "read_committed"), "the zombie's transaction was aborted");
    }

    @Test
    void consumeTransformProduceCommitsOffsetsWithTheOutputExactlyOnce() throws Exception {
        String input = Cluster.uniqueTopic("txn-input");
        String output = Cluster.uniqueTopic("txn-output");
        Cluster.createTopic(input, 1, layout());
        Cluster.createTopic(output, 1, layout());
        try (KafkaProducer<String, String> plain = Cluster.producer(Map.of())) {
            send(plain, input, "in", 100);
            plain.flush();
        }
        String group = "txn-group-" + UUID.randomUUID();
        TopicPartition in = new TopicPartition(input, 0);
        try (KafkaProducer<String, String> producer = transactional("txn-" + UUID.randomUUID(), Map.of());
                KafkaConsumer<String, String> consumer = Cluster.consumer(group, Map.of("isolation.level", "read_committed", "max.poll.records", "30"))) {
            consumer.subscribe(List.of(input));
            int done = 0;
            boolean abortedOnce = false;
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (done < 100 && System.nanoTime() < until) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    continue;
                }
                producer.beginTransaction();
                long next = 0;
                for (ConsumerRecord<String, String> record : records) {
                    producer.send(new ProducerRecord<>(output, 0, record.key(), record.value().replace("in", "out")));
                    next = record.offset() + 1;
                }
                producer.sendOffsetsToTransaction(Map.of(in, new OffsetAndMetadata(next)), consumer.groupMetadata());
                if (!abortedOnce) {
                    // The first batch is aborted and processed again: its output and offsets never count.
                    producer.abortTransaction();
                    abortedOnce = true;
                    consumer.seek(in, 0);
                    continue;
                }
                producer.commitTransaction();
                done += records.count();
            }
            assertEquals(100, done);
        }
        assertEquals(numbered("out", 100), readValues(output, "read_committed"), "each record once");
        try (Admin admin = Cluster.admin()) {
            Map<TopicPartition, OffsetAndMetadata> offsets = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            assertEquals(100, offsets.get(in).offset());
        }
    }

    @Test
    void aTransactionOpenLongerThanItsTimeoutIsAbortedAndItsProducerFenced() throws Exception {
        String topic = Cluster.uniqueTopic("txn-timeout");
        Cluster.createTopic(topic, 1, layout());
        String id = "txn-" + UUID.randomUUID();
        try (KafkaProducer<String, String> producer = transactional(id, Map.of("transaction.timeout.ms", "1500"))) {
            producer.beginTransaction();
            send(producer, topic, "late", 3);
            producer.flush();
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Cluster.psql("SELECT state FROM kafka.transactions WHERE transactional_id = '" + id + "'").equals("CompleteAbort")) {
                assertTrue(System.nanoTime() < until, "the coordinator aborts it within 30 s");
                Thread.sleep(200);
            }
            KafkaException failed = assertThrows(KafkaException.class, producer::commitTransaction);
            assertInstanceOf(KafkaException.class, failed);
        }
        assertEquals(List.of(), readValues(topic, "read_committed"));
        assertEquals(numbered("late", 3), readValues(topic, "read_uncommitted"));
    }

    @Test
    void aRowLayoutTopicKeepsATransactionsProducerOnItsRowsAndItsMarkersAsRowsOfTheirOwn() throws Exception {
        String topic = Cluster.uniqueTopic("txn-rows");
        Cluster.createTopic(topic, 1, Map.of("pg_kafka.storage", "rows"));
        try (KafkaProducer<String, String> producer = transactional("txn-" + UUID.randomUUID(), Map.of())) {
            producer.beginTransaction();
            send(producer, topic, "x", 2);
            producer.commitTransaction();
            producer.beginTransaction();
            send(producer, topic, "y", 1);
            producer.flush();
            producer.abortTransaction();
        }
        String rows = "SELECT string_agg(\"offset\" || ':' || CASE WHEN control THEN '' ELSE convert_from(value, 'UTF8') END || ':' || (producer_id IS NOT NULL)"
                + " || ':' || coalesce(control, false), ',' ORDER BY \"offset\") FROM kafka.messages m JOIN kafka.topics t ON t.id = m.topic_id"
                + " WHERE t.name = '" + topic + "'";
        assertEquals("0:x0:true:false,1:x1:true:false,2::true:true,3:y0:true:false,4::true:true", Cluster.psql(rows),
                "records with their producer, a marker row after each transaction");
        assertEquals("x0,x1", Cluster.psql("SELECT string_agg(value_text, ',' ORDER BY \"offset\") FROM kafka.topic_messages"
                + " WHERE topic = '" + topic + "'"), "SQL readers see committed records only");
        assertEquals(List.of("x0", "x1"), readValues(topic, "read_committed"));
        assertEquals(List.of("x0", "x1", "y0"), readValues(topic, "read_uncommitted"));
    }

    private static int epoch(String id) {
        return Integer.parseInt(Cluster.psql("SELECT producer_epoch FROM kafka.transactions WHERE transactional_id = '" + id + "'"));
    }

    /** The transaction.version level ApiVersions finalizes now (0: not listed). */
    private static short transactionVersion(Admin admin) throws Exception {
        var finalized = admin.describeFeatures().featureMetadata().get().finalizedFeatures().get("transaction.version");
        return finalized == null ? 0 : finalized.maxVersionLevel();
    }

    private static void setTransactionVersion(Admin admin, String setting, short level) throws Exception {
        Cluster.psql("ALTER SYSTEM " + setting);
        Cluster.psql("SELECT pg_reload_conf()");
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (transactionVersion(admin) != level) {
            assertTrue(System.nanoTime() < until, "the worker finalizes transaction.version " + level + " within 30 s");
            Thread.sleep(200);
        }
    }

    /** Three committed transactions of `id`: the epoch it ends at, less the one it began at. */
    private static int epochBumpsOverThreeCommits(String id, String topic, String prefix) {
        try (KafkaProducer<String, String> producer = transactional(id, Map.of())) {
            int first = epoch(id);
            for (int round = 0; round < 3; round++) {
                producer.beginTransaction();
                send(producer, topic, prefix + round + "-", 2);
                producer.commitTransaction();
            }
            return epoch(id) - first;
        }
    }

    @Test
    void transactionsV2BumpTheEpochAtEveryCommitAndVersion1KeepsTheJavaClientOnV1() throws Exception {
        String topic = Cluster.uniqueTopic("txn-versions");
        Cluster.createTopic(topic, 1, layout());
        try (Admin admin = Cluster.admin()) {
            assertEquals(2, transactionVersion(admin), "Transactions V2 by default");
            assertEquals(3, epochBumpsOverThreeCommits("txn-" + UUID.randomUUID(), topic, "v2-"),
                    "V2: EndTxn v5 bumps the epoch at every end");
            try {
                setTransactionVersion(admin, "SET pg_kafka.transaction_version = 1", (short) 1);
                assertEquals(0, epochBumpsOverThreeCommits("txn-" + UUID.randomUUID(), topic, "v1-"),
                        "V1: AddPartitionsToTxn, and EndTxn keeps the epoch");
            } finally {
                setTransactionVersion(admin, "RESET pg_kafka.transaction_version", (short) 2);
            }
        }
        List<String> expected = new ArrayList<>();
        for (String version : List.of("v2-", "v1-")) {
            for (int round = 0; round < 3; round++) {
                expected.addAll(numbered(version + round + "-", 2));
            }
        }
        assertEquals(expected, readValues(topic, "read_committed"));
    }
}
