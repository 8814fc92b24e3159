package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.common.utils.Bytes;
import org.junit.jupiter.api.Test;

/**
 * Kafka Streams exactly_once_v2 on pg_kafka: a count by key whose state lives in a
 * changelog written in the same transactions as the output and the input offsets. The
 * pg_kafka worker is killed with SIGKILL while the application runs (Postgres
 * reinitializes; the open transaction is aborted and the application's producer fenced
 * when the worker is back); then the application itself, run in a JVM of its own, is
 * killed with SIGKILL while its transaction is open (the coordinator aborts it at its
 * timeout), and the application is restarted with an empty state directory (its state
 * restored from the changelog): each key's output counts go up by one at a time, never
 * repeat, and end at the number of its input records.
 * Every topic, internal ones included, has the cluster's default layout: rows in the PG 15
 * tier, batches in the PG 18 one (a compacted changelog with transactions, in both).
 */
class ExactlyOnceStreamsTest {
    private static final int KEYS = 10;

    /** The application in a JVM of its own (killed by the test): `app input output`. */
    public static void main(String[] args) throws Exception {
        KafkaStreams streams = new KafkaStreams(topology(args[1], args[2]), props(args[0]));
        streams.start();
        Thread.sleep(Long.MAX_VALUE);
    }

    private static Properties props(String app) throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        // Transactions V2 opens a transaction with its first Produce: with no linger and half a
        // second between commits, the application's transaction is open most of the time.
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "500");
        props.put(StreamsConfig.producerPrefix("linger.ms"), "0");
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, "0");
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("eos-state").toString());
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), "10000");
        props.put(StreamsConfig.producerPrefix("delivery.timeout.ms"), "120000");
        return props;
    }

    private static org.apache.kafka.streams.Topology topology(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(input)
                .groupByKey()
                .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts").withValueSerde(Serdes.Long()))
                .toStream()
                .mapValues(count -> Long.toString(count))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder.build();
    }

    private static void produce(String topic, int from, int to) {
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("enable.idempotence", "true"))) {
            for (int i = from; i < to; i++) {
                producer.send(new ProducerRecord<>(topic, "k" + (i % KEYS), "v" + i));
            }
            producer.flush();
        }
    }

    /** Each key's output counts in order, read_committed. */
    private static Map<String, List<Long>> counts(String output) {
        Map<String, List<Long>> counts = new TreeMap<>();
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(null, Map.of("isolation.level", "read_committed"))) {
            for (ConsumerRecord<String, String> r : Cluster.readAll(consumer, output)) {
                counts.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(Long.parseLong(r.value()));
            }
        }
        return counts;
    }

    private static String ongoing(String app) {
        return Cluster.psql("SELECT count(*) FROM kafka.transactions WHERE transactional_id LIKE '" + app + "%' AND state = 'Ongoing'");
    }

    private static String logLines(String like) {
        return Cluster.psql("SELECT count(*) FROM regexp_split_to_table(pg_read_file('server.log'), E'\\n') AS l WHERE l LIKE '"
                + like + "'");
    }

    /** Runs the application in a JVM of its own until its transaction is open and
     * `input` flowing, then kills it with SIGKILL. */
    private static void killAppMidTransaction(String app, String input, String output) throws Exception {
        Path log = Files.createTempFile("eos-app", ".log");
        Process child = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx256m",
                "-cp", System.getProperty("java.class.path"), ExactlyOnceStreamsTest.class.getName(), app, input, output)
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (!ongoing(app).equals("1")) {
                assertTrue(child.isAlive(), "the application's JVM exited: " + Files.readString(log));
                assertTrue(System.nanoTime() < deadline, "no transaction of the application's JVM open within 120 s");
                sleep(20);
            }
        } finally {
            child.destroyForcibly(); // SIGKILL: no commit, no abort, no leave
            child.waitFor(30, TimeUnit.SECONDS);
        }
    }

    private static boolean reached(String output, long each) {
        Map<String, List<Long>> counts = counts(output);
        return counts.size() == KEYS && counts.values().stream().allMatch(c -> c.get(c.size() - 1) == each);
    }

    /** Runs the application until every key's count is `each()`, asked after `meanwhile`. */
    private static void runUntil(String app, String input, String output, java.util.function.LongSupplier each, Runnable meanwhile)
            throws Exception {
        try (KafkaStreams streams = new KafkaStreams(topology(input, output), props(app))) {
            streams.start();
            meanwhile.run();
            waitForCounts(streams, output, each.getAsLong());
            streams.close(Duration.ofSeconds(30));
        }
    }

    private static void waitForCounts(KafkaStreams streams, String output, long each) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
        while (!reached(output, each)) {
            assertNotEquals(KafkaStreams.State.ERROR, streams.state(), "the application failed");
            assertTrue(System.nanoTime() < deadline, "counts of " + each + " not reached within 180 s: " + counts(output));
            Thread.sleep(500);
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }

    /** Input records from `from` on, one every 2 ms, in a thread of its own, until stopped:
     * input flows whenever the test kills something, however slow the application starts. */
    private static final class Input extends Thread {
        private final String topic;
        private final int from;
        private volatile boolean stopping;
        private int end;

        Input(String topic, int from) {
            this.topic = topic;
            this.from = from;
            start();
        }

        @Override
        public void run() {
            try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("enable.idempotence", "true", "linger.ms", "0"))) {
                int i = from;
                for (; !(stopping && i % KEYS == 0); i++) {
                    producer.send(new ProducerRecord<>(topic, "k" + (i % KEYS), "v" + i));
                    ExactlyOnceStreamsTest.sleep(2);
                }
                producer.flush();
                end = i;
            }
        }

        /** Stops at the next multiple of KEYS (every key as often); returns that end. */
        int stopAt() {
            stopping = true;
            try {
                join();
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
            return end;
        }
    }

    @Test
    void countsStayExactAcrossAKillOfTheWorkerAndARestartThatRestoresFromTheChangelog() throws Exception {
        String input = Cluster.uniqueTopic("eos-input");
        String output = Cluster.uniqueTopic("eos-output");
        Cluster.createTopic(input, 2, Map.of());
        Cluster.createTopic(output, 2, Map.of());
        String app = "eos-" + java.util.UUID.randomUUID().toString().substring(0, 8);
        Input[] input1 = new Input[1];
        int[] ends = new int[2];
        runUntil(app, input, output, () -> ends[0] / KEYS, () -> {
            input1[0] = new Input(input, 0);
            // Kill the worker while input flows and the application has committed some output:
            // a transaction of the application is open at the kill.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (counts(output).isEmpty()) {
                assertTrue(System.nanoTime() < deadline, "no output within 120 s");
                sleep(200);
            }
            while (!ongoing(app).equals("1")) {
                assertTrue(System.nanoTime() < deadline, "no transaction of the application open within 120 s");
            }
            String pid = Cluster.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_kafka'");
            Cluster.run(List.of("kill", "-9", pid), 10);
            sleep(1000); // input goes on while the worker is back
            ends[0] = input1[0].stopAt();
        });
        assertEquals("1", logLines("%transactional id \"" + app + "%was Ongoing at start%"),
                "the application's transaction was open at the kill and aborted when the worker came back");
        Input input2 = new Input(input, ends[0]);
        killAppMidTransaction(app, input, output);
        ends[1] = input2.stopAt();
        produce(input, ends[1], ends[1] + 100);
        long each = (ends[1] + 100) / KEYS;
        runUntil(app, input, output, () -> each, () -> {});
        assertEquals("1", logLines("%aborted transaction of \"" + app + "%open longer than its timeout%"),
                "the killed application's transaction was aborted at its timeout");
        for (Map.Entry<String, List<Long>> key : counts(output).entrySet()) {
            List<Long> values = key.getValue();
            for (int i = 1; i < values.size(); i++) {
                assertEquals(values.get(i - 1) + 1, values.get(i), key.getKey() + ": counts go up one at a time, none repeated");
            }
            assertEquals(each, values.get(values.size() - 1), key.getKey());
        }
        String changelog = app + "-counts-changelog";
        assertEquals("t", Cluster.psql("SELECT storage = current_setting('pg_kafka.default_topic_storage') FROM kafka.topics"
                + " WHERE name = '" + changelog + "'"), "the cluster's default layout (the CI tiers run both)");
    }
}
