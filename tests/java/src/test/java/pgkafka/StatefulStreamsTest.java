package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.WindowStore;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.Test;

/**
 * Stateful Kafka Streams topologies at_least_once on pg_kafka: a count by key, a windowed
 * count and a KTable-KTable join, whose state lives in compacted changelog topics (a
 * windowed one `compact,delete`) that pg_kafka creates, verifies, compacts while the app
 * runs and serves back when a restarted app restores its state. Their output is compared
 * with the same topology's on Kafka Streams' own TopologyTestDriver over the same input.
 */
class StatefulStreamsTest {

    /** Record times: minute windows, ten records a window, from 40 minutes ago (300 records: 30 minutes). */
    private static final long BASE_MS = Instant.now().minus(Duration.ofMinutes(40)).toEpochMilli() / 60_000 * 60_000;

    private record Topics(String words, String users, String regions, String counts, String windowed, String joined) {
        static Topics unique() {
            return new Topics(Cluster.uniqueTopic("words"), Cluster.uniqueTopic("users"), Cluster.uniqueTopic("regions"),
                    Cluster.uniqueTopic("counts"), Cluster.uniqueTopic("windowed"), Cluster.uniqueTopic("joined"));
        }
    }

    private static Topology topology(Topics t) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> words = builder.stream(t.words());
        words.groupByKey().count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts").withValueSerde(Serdes.Long()))
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(t.counts(), Produced.with(Serdes.String(), Serdes.String()));
        words.groupByKey().windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofMinutes(1)))
                .count(Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("windows").withValueSerde(Serdes.Long()))
                .toStream()
                .map((window, count) -> org.apache.kafka.streams.KeyValue.pair(window.key() + "@" + window.window().start(), Long.toString(count)))
                .to(t.windowed(), Produced.with(Serdes.String(), Serdes.String()));
        KTable<String, String> users = builder.table(t.users());
        KTable<String, String> regions = builder.table(t.regions());
        users.join(regions, (name, region) -> name + "@" + region).toStream()
                .to(t.joined(), Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    /** One input record: topic, key, value, timestamp. */
    private record Input(String topic, String key, String value, long timestampMs) {}

    /** Words w0..w9 (a key each), users u0..u19 renamed and moved between regions. */
    private static List<Input> inputs(Topics t, int from, int to) {
        List<Input> inputs = new ArrayList<>();
        for (int i = from; i < to; i++) {
            long at = BASE_MS + i * 6_000L;
            inputs.add(new Input(t.words(), "w" + (i * 7 % 10), "x", at));
            if (i % 3 == 0) {
                inputs.add(new Input(t.users(), "u" + (i % 20), "name" + i, at));
            }
            if (i % 4 == 0) {
                inputs.add(new Input(t.regions(), "u" + (i % 20), "region" + (i % 5), at));
            }
        }
        return inputs;
    }

    private static Properties streamsProps(String application) throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, application);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        // No cache: every update is emitted, as on the test driver, so outputs compare exactly.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("pg-kafka-stateful").toString());
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        // Changelogs whose head is 100 ms: pg_kafka compacts them while the test runs, so
        // the restarted app restores from a compacted log.
        props.put(StreamsConfig.topicPrefix(TopicConfig.SEGMENT_MS_CONFIG), "100");
        props.put(StreamsConfig.topicPrefix(TopicConfig.MIN_CLEANABLE_DIRTY_RATIO_CONFIG), "0.01");
        return props;
    }

    @Test
    void countWindowsAndJoinMatchTheTestDriverAcrossARestartThatRestoresFromCompactedChangelogs() throws Exception {
        Topics t = Topics.unique();
        Cluster.createTopic(t.words(), 3, Map.of());
        Cluster.createTopic(t.users(), 3, Map.of());
        Cluster.createTopic(t.regions(), 3, Map.of());
        for (String output : List.of(t.counts(), t.windowed(), t.joined())) {
            Cluster.createTopic(output, 1, Map.of());
        }
        String application = t.words() + "-app";
        List<Input> first = inputs(t, 0, 150);
        List<Input> second = inputs(t, 150, 300);
        Map<String, List<String>> expected = onTestDriver(t, concat(first, second));

        produce(first);
        Map<String, List<String>> expectedFirst = onTestDriver(t, first);
        runUntil(streamsProps(application), t, () -> outputs(t.counts()).size() >= expectedFirst.get("counts").size()
                && outputs(t.windowed()).size() >= expectedFirst.get("windowed").size()
                && latest(outputs(t.joined())).equals(latest(expectedFirst.get("joined"))));

        // Its changelogs, as Kafka Streams created them: compacted (the windowed one also
        // deletes by time), and compacted by pg_kafka while the app ran.
        String countChangelog = application + "-counts-changelog";
        String windowChangelog = application + "-windows-changelog";
        assertEquals("compact", Cluster.cleanupPolicy(countChangelog));
        assertEquals("compact,delete", Cluster.cleanupPolicy(windowChangelog));
        waitFor(() -> !"0".equals(Cluster.psql("SELECT coalesce(sum(compaction_removed), 0) FROM kafka.topic_partitions WHERE topic = '"
                + countChangelog + "'")), "compaction removed superseded counts from " + countChangelog);

        // A new instance with an empty state directory restores every store from the
        // changelogs, then continues: counts go on from where they were, not from 1.
        produce(second);
        runUntil(streamsProps(application), t, () -> outputs(t.counts()).size() >= expected.get("counts").size()
                && outputs(t.windowed()).size() >= expected.get("windowed").size()
                && latest(outputs(t.joined())).equals(latest(expected.get("joined"))));

        assertEquals(byKey(expected.get("counts")), byKey(outputs(t.counts())), "every count update, in order per key");
        assertEquals(byKey(expected.get("windowed")), byKey(outputs(t.windowed())), "every windowed count update");
        assertEquals(latest(expected.get("joined")), latest(outputs(t.joined())), "the join's result per user");
        assertNotEquals(0, latest(expected.get("joined")).size());
    }

    /** The topology on Kafka Streams' TopologyTestDriver: each output topic's "key=value" records. */
    private static Map<String, List<String>> onTestDriver(Topics t, List<Input> inputs) throws Exception {
        Properties props = streamsProps("driver");
        try (TopologyTestDriver driver = new TopologyTestDriver(topology(t), props)) {
            Map<String, TestInputTopic<String, String>> in = new LinkedHashMap<>();
            for (String topic : List.of(t.words(), t.users(), t.regions())) {
                in.put(topic, driver.createInputTopic(topic, new StringSerializer(), new StringSerializer()));
            }
            for (Input input : inputs) {
                in.get(input.topic()).pipeInput(new TestRecord<>(input.key(), input.value(), null, input.timestampMs()));
            }
            Map<String, List<String>> out = new TreeMap<>();
            out.put("counts", read(driver.createOutputTopic(t.counts(), new StringDeserializer(), new StringDeserializer())));
            out.put("windowed", read(driver.createOutputTopic(t.windowed(), new StringDeserializer(), new StringDeserializer())));
            out.put("joined", read(driver.createOutputTopic(t.joined(), new StringDeserializer(), new StringDeserializer())));
            return out;
        }
    }

    private static List<String> read(TestOutputTopic<String, String> topic) {
        return topic.readKeyValuesToList().stream().map(kv -> kv.key + "=" + kv.value).toList();
    }

    private static void produce(List<Input> inputs) {
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (Input input : inputs) {
                producer.send(new ProducerRecord<>(input.topic(), null, input.timestampMs(), input.key(), input.value()));
            }
            producer.flush();
        }
    }

    /** Runs the application until `done` (or fails after 120 s), then closes it cleanly. */
    private static void runUntil(Properties props, Topics t, BooleanSupplier done) throws Exception {
        try (KafkaStreams streams = new KafkaStreams(topology(t), props)) {
            streams.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!done.getAsBoolean()) {
                assertNotEquals(KafkaStreams.State.ERROR, streams.state(), "the application failed");
                assertTrue(System.nanoTime() < deadline, "the application's output was not complete within 120 s");
                Thread.sleep(500);
            }
            streams.close(Duration.ofSeconds(30));
        }
    }

    private static void waitFor(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!condition.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, what + " within 30 s");
            Thread.sleep(250);
        }
    }

    private static List<String> outputs(String topic) {
        return Cluster.readAll(topic).stream().map((ConsumerRecord<String, String> r) -> r.key() + "=" + r.value()).toList();
    }

    /** "key=value" records grouped by key, each key's values in order. */
    private static Map<String, List<String>> byKey(List<String> records) {
        return records.stream().collect(Collectors.groupingBy(r -> r.substring(0, r.indexOf('=')), TreeMap::new,
                Collectors.mapping(r -> r.substring(r.indexOf('=') + 1), Collectors.toList())));
    }

    /** Each key's last value. */
    private static Map<String, String> latest(List<String> records) {
        Map<String, String> latest = new TreeMap<>();
        records.forEach(r -> latest.put(r.substring(0, r.indexOf('=')), r.substring(r.indexOf('=') + 1)));
        return latest;
    }

    private static List<Input> concat(List<Input> a, List<Input> b) {
        List<Input> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }
}
