package pgkafka;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Kafka's Java producer: acks, idempotence, codecs, headers, timestamps, partitioning, sizes, errors. */
class ProducerTest {

    private static List<String> values(List<ConsumerRecord<String, String>> records) {
        return records.stream().map(ConsumerRecord::value).toList();
    }

    @ParameterizedTest
    @ValueSource(strings = {"0", "1", "all"})
    void everyAcksSettingDeliversInOrder(String acks) throws Exception {
        String topic = Cluster.uniqueTopic("acks" + acks);
        Cluster.createTopic(topic, 1, Map.of());
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("acks", acks, "enable.idempotence", "false"))) {
            List<Future<RecordMetadata>> acked = new ArrayList<>();
            for (int i = 0; i < 200; i++) {
                sent.add("acks-" + acks + "-" + i);
                acked.add(producer.send(new ProducerRecord<>(topic, sent.get(i))));
            }
            producer.flush();
            for (int i = 0; i < acked.size(); i++) {
                RecordMetadata metadata = acked.get(i).get(30, TimeUnit.SECONDS);
                // acks=0 learns no offsets (Kafka's client reports -1).
                assertEquals(acks.equals("0") ? -1 : i, metadata.offset());
            }
        }
        assertEquals(sent, values(readAllEventually(topic, sent.size())));
    }

    /** acks=0 answers before the write: wait until every record is readable. */
    private static List<ConsumerRecord<String, String>> readAllEventually(String topic, int count) throws InterruptedException {
        for (int attempt = 0; attempt < 50; attempt++) {
            List<ConsumerRecord<String, String>> records = Cluster.readAll(topic);
            if (records.size() >= count) {
                return records;
            }
            Thread.sleep(200);
        }
        return Cluster.readAll(topic);
    }

    @Test
    void idempotentProducerWithFiveInFlightKeepsOrderAndWritesEachRecordOnce() throws Exception {
        String topic = Cluster.uniqueTopic("idempotent");
        Cluster.createTopic(topic, 3, Map.of());
        int count = 20_000;
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("enable.idempotence", "true", "acks", "all",
                "max.in.flight.requests.per.connection", "5", "batch.size", "4096", "linger.ms", "0"))) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, i % 3, null, Integer.toString(i)));
            }
            producer.flush();
        }
        List<ConsumerRecord<String, String>> records = Cluster.readAll(topic);
        assertEquals(count, records.size());
        for (int partition = 0; partition < 3; partition++) {
            int p = partition;
            List<Integer> got = records.stream().filter(r -> r.partition() == p).map(r -> Integer.parseInt(r.value())).toList();
            List<Integer> expected = new ArrayList<>();
            for (int i = p; i < count; i += 3) {
                expected.add(i);
            }
            assertEquals(expected, got, "partition " + p);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void everyCodecRoundTrips(String codec) throws Exception {
        String topic = Cluster.uniqueTopic("codec-" + codec);
        Cluster.createTopic(topic, 1, Map.of());
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("compression.type", codec, "linger.ms", "20"))) {
            for (int i = 0; i < 500; i++) {
                sent.add(codec + " value " + i + " " + "x".repeat(i % 50));
                producer.send(new ProducerRecord<>(topic, "k" + (i % 7), sent.get(i)));
            }
            producer.flush();
        }
        List<ConsumerRecord<String, String>> records = Cluster.readAll(topic);
        assertEquals(sent, values(records));
        for (int i = 0; i < records.size(); i++) {
            assertEquals("k" + (i % 7), records.get(i).key());
            assertEquals(i, records.get(i).offset());
        }
    }

    /** A topic's compression.type: both layouts keep or send batches in that codec, which the Java consumer reads. */
    @ParameterizedTest
    @CsvSource({"gzip,rows", "snappy,rows", "lz4,rows", "zstd,rows", "gzip,batches", "snappy,batches", "lz4,batches", "zstd,batches"})
    void aTopicsCompressionTypeIsWhatConsumersRead(String codec, String layout) throws Exception {
        String topic = Cluster.uniqueTopic("topic-codec-" + codec + "-" + layout);
        Cluster.createTopic(topic, 1, Map.of("compression.type", codec, "pg_kafka.storage", layout));
        List<String> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("linger.ms", "20"))) {
            for (int i = 0; i < 300; i++) {
                sent.add("value " + i + " " + "y".repeat(i % 300));
                producer.send(new ProducerRecord<>(topic, "k" + i, sent.get(i)));
            }
            producer.flush();
        }
        assertEquals(sent, values(Cluster.readAll(topic)), codec + " in " + layout);
        if (layout.equals("batches")) {
            String codecs = Cluster.psql("SELECT string_agg(DISTINCT (get_byte(batch, 22) & 7)::text, ',') FROM kafka.batches b "
                    + "JOIN kafka.topics t ON t.id = b.topic_id WHERE t.name = '" + topic + "'");
            assertEquals(Map.of("gzip", "1", "snappy", "2", "lz4", "3", "zstd", "4").get(codec), codecs, "stored in the topic's codec");
        }
    }

    @Test
    void headersWithRepeatedKeysAndExplicitTimestampsRoundTripByteExact() throws Exception {
        String topic = Cluster.uniqueTopic("headers");
        Cluster.createTopic(topic, 1, Map.of());
        long timestamp = 1_600_000_000_123L;
        byte[] binary = {0, 1, (byte) 0xff, 0, 'x'};
        List<Header> headers = List.of(new RecordHeader("a", "1".getBytes(StandardCharsets.UTF_8)),
                new RecordHeader("a", "2".getBytes(StandardCharsets.UTF_8)), new RecordHeader("bin", binary),
                new RecordHeader("empty", new byte[0]), new RecordHeader("none", (byte[]) null));
        try (KafkaProducer<byte[], byte[]> producer = Cluster.bytesProducer(Map.of())) {
            producer.send(new ProducerRecord<>(topic, 0, timestamp, binary, binary, headers)).get(30, TimeUnit.SECONDS);
            producer.send(new ProducerRecord<byte[], byte[]>(topic, 0, timestamp + 1, null, null)).get(30, TimeUnit.SECONDS);
        }
        try (KafkaConsumer<byte[], byte[]> consumer = Cluster.bytesConsumer()) {
            List<ConsumerRecord<byte[], byte[]>> records = Cluster.readAll(consumer, topic);
            assertEquals(2, records.size());
            ConsumerRecord<byte[], byte[]> first = records.get(0);
            assertEquals(timestamp, first.timestamp());
            assertEquals(TimestampType.CREATE_TIME, first.timestampType());
            assertArrayEquals(binary, first.key());
            assertArrayEquals(binary, first.value());
            Header[] got = first.headers().toArray();
            assertEquals(headers.size(), got.length);
            for (int i = 0; i < got.length; i++) {
                assertEquals(headers.get(i).key(), got[i].key());
                assertArrayEquals(headers.get(i).value(), got[i].value(), "header " + i);
            }
            assertNull(records.get(1).key());
            assertNull(records.get(1).value());
            assertEquals(timestamp + 1, records.get(1).timestamp());
        }
    }

    /** The Java producer partitions keys with murmur2; kafka.produce() in SQL must agree. */
    @Test
    void keyedRecordsLandWhereMurmur2PutsThemFromJavaAndFromSql() throws Exception {
        String topic = Cluster.uniqueTopic("murmur2");
        int partitions = 6;
        Cluster.createTopic(topic, partitions, Map.of());
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (int i = 0; i < 60; i++) {
                String key = "key-" + i;
                RecordMetadata metadata = producer.send(new ProducerRecord<>(topic, key, "v")).get(30, TimeUnit.SECONDS);
                int expected = Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % partitions;
                assertEquals(expected, metadata.partition(), key);
            }
        }
        for (int i = 0; i < 20; i++) {
            String key = "sql-key-" + i;
            Cluster.psql("SELECT kafka.produce('" + topic + "', '" + key + "', 'from sql')");
            String partition = Cluster.psql("SELECT partition FROM kafka.topic_messages WHERE topic = '" + topic
                    + "' AND key_text = '" + key + "'");
            int expected = Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % partitions;
            assertEquals(Integer.toString(expected), partition, key);
        }
    }

    @Test
    void oneMebibyteRecordsRoundTrip() throws Exception {
        String topic = Cluster.uniqueTopic("large");
        Cluster.createTopic(topic, 1, Map.of("max.message.bytes", Integer.toString(2 << 20)));
        byte[] value = new byte[1 << 20];
        for (int i = 0; i < value.length; i++) {
            value[i] = (byte) (i * 31 + 7);
        }
        try (KafkaProducer<byte[], byte[]> producer = Cluster.bytesProducer(Map.of("max.request.size", Integer.toString(4 << 20)))) {
            for (int i = 0; i < 3; i++) {
                producer.send(new ProducerRecord<>(topic, null, value)).get(30, TimeUnit.SECONDS);
            }
        }
        try (KafkaConsumer<byte[], byte[]> consumer = Cluster.bytesConsumer()) {
            List<ConsumerRecord<byte[], byte[]>> records = Cluster.readAll(consumer, topic);
            assertEquals(3, records.size());
            for (ConsumerRecord<byte[], byte[]> record : records) {
                assertArrayEquals(value, record.value());
            }
        }
    }

    @Test
    void aRecordOverTheTopicsMaxMessageBytesFailsInItsCallback() throws Exception {
        String topic = Cluster.uniqueTopic("too-large");
        Cluster.createTopic(topic, 1, Map.of("max.message.bytes", "1000"));
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("max.request.size", "100000", "retries", "0",
                "enable.idempotence", "false"))) {
            Throwable[] seen = new Throwable[1];
            Future<RecordMetadata> future = producer.send(new ProducerRecord<>(topic, "x".repeat(5000)), (m, e) -> seen[0] = e);
            ExecutionException failed = assertThrows(ExecutionException.class, () -> future.get(30, TimeUnit.SECONDS));
            assertInstanceOf(RecordTooLargeException.class, failed.getCause());
            assertInstanceOf(RecordTooLargeException.class, seen[0], "the callback saw it too");
            // The topic still takes records that fit.
            assertEquals(0, producer.send(new ProducerRecord<>(topic, "small")).get(30, TimeUnit.SECONDS).offset());
        }
    }

    @Test
    void anUnknownTopicWithAutoCreationOffFailsInTheCallback() throws Exception {
        String topic = Cluster.uniqueTopic("never-created");
        Cluster.setCluster("pg_kafka.auto_create_topics", "off");
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("max.block.ms", "3000"))) {
            Throwable[] seen = new Throwable[1];
            Future<RecordMetadata> future = producer.send(new ProducerRecord<>(topic, "v"), (m, e) -> seen[0] = e);
            ExecutionException failed = assertThrows(ExecutionException.class, () -> future.get(30, TimeUnit.SECONDS));
            assertInstanceOf(TimeoutException.class, failed.getCause());
            assertTrue(failed.getCause().getMessage().contains("not present in metadata"), failed.getCause().getMessage());
            assertInstanceOf(TimeoutException.class, seen[0]);
        } finally {
            Cluster.resetCluster("pg_kafka.auto_create_topics");
        }
        assertEquals("0", Cluster.psql("SELECT count(*) FROM kafka.topics WHERE name = '" + topic + "'"));
    }

    @Test
    void aRoleWithoutWriteOnTheTopicIsRefusedInTheCallback() throws Exception {
        String topic = Cluster.uniqueTopic("acl");
        Cluster.createTopic(topic, 1, Map.of());
        Cluster.psql("DROP ROLE IF EXISTS java_reader; CREATE ROLE java_reader LOGIN PASSWORD 'java-pw'");
        Cluster.psql("SELECT kafka.grant_acl('java_reader', 'describe', 'topic', '" + topic + "')");
        Map<String, String> sasl = Map.of("bootstrap.servers", Cluster.saslPlaintext(), "security.protocol", "SASL_PLAINTEXT",
                "sasl.mechanism", "SCRAM-SHA-256", "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"java_reader\" password=\"java-pw\";",
                "enable.idempotence", "false", "max.block.ms", "10000");
        try (KafkaProducer<String, String> producer = Cluster.producer(sasl)) {
            Throwable[] seen = new Throwable[1];
            Future<RecordMetadata> future = producer.send(new ProducerRecord<>(topic, "v"), (m, e) -> seen[0] = e);
            ExecutionException failed = assertThrows(ExecutionException.class, () -> future.get(30, TimeUnit.SECONDS));
            assertInstanceOf(TopicAuthorizationException.class, failed.getCause());
            assertInstanceOf(TopicAuthorizationException.class, seen[0]);
        }
        assertEquals(List.of(), Cluster.readAll(topic));
        assertTrue(Arrays.asList(Cluster.psql("SELECT count(*) FROM kafka.topics WHERE name = '" + topic + "'")).contains("1"));
    }
}
