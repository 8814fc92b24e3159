package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.IntStream;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.utils.internals.Exit;
import org.apache.kafka.connect.cli.ConnectDistributed;
import org.apache.kafka.connect.runtime.Connect;
import org.apache.kafka.connect.runtime.distributed.DistributedHerder;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Kafka Connect 4.x distributed workers on pg_kafka, in the test's JVM: a worker creates
 * its config, offset and status topics (compacted) and verifies their cleanup policy
 * before it starts; a file source and sink run end to end; a restarted worker finds the
 * connectors' configs and resumes the source at its stored offset with no duplicate; a
 * second worker joins and the tasks are spread over both. With
 * `exactly.once.source.support=enabled` (internal topics in the batch layout, which
 * transactions need), the source's records and offsets are written in transactions, and a
 * restarted worker resumes with each line in the topic once, read_committed.
 */
class ConnectTest {

    private static final HttpClient HTTP = HttpClient.newHttpClient();

    @BeforeAll
    static void connectMustNotExitTheJvm() {
        Exit.setExitProcedure((code, message) -> {
            throw new AssertionError("Kafka Connect wanted to exit with " + code + ": " + message);
        });
    }

    @AfterAll
    static void restoreExit() {
        Exit.resetExitProcedure();
    }

    private static Map<String, String> workerProps(String prefix) {
        Map<String, String> props = new HashMap<>();
        props.put("bootstrap.servers", Cluster.bootstrap());
        props.put("group.id", prefix + "-workers");
        props.put("config.storage.topic", prefix + "-configs");
        props.put("offset.storage.topic", prefix + "-offsets");
        props.put("status.storage.topic", prefix + "-status");
        props.put("config.storage.replication.factor", "1");
        props.put("offset.storage.replication.factor", "1");
        props.put("status.storage.replication.factor", "1");
        props.put("offset.storage.partitions", "5");
        props.put("status.storage.partitions", "1");
        props.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        props.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        props.put("offset.flush.interval.ms", "500");
        props.put("listeners", "http://127.0.0.1:0");
        props.put("plugin.discovery", "service_load");
        props.put("scheduled.rebalance.max.delay.ms", "2000");
        return props;
    }

    private record Worker(Connect<DistributedHerder> connect, URI url) implements AutoCloseable {
        static Worker start(Map<String, String> props) {
            Connect<DistributedHerder> connect = new ConnectDistributed().startConnect(props);
            return new Worker(connect, connect.rest().serverUrl());
        }

        @Override
        public void close() {
            connect.stop();
            connect.awaitStop();
        }
    }

    @Test
    void workersStoreTheirStateInPgKafkaAndResumeWithoutDuplicates() throws Exception {
        String prefix = Cluster.uniqueTopic("connect");
        String topic = prefix + "-lines";
        Cluster.createTopic(topic, 2, Map.of());
        Path dir = Files.createTempDirectory("pg-kafka-connect");
        Path source = dir.resolve("source.txt");
        Path sink = dir.resolve("sink.txt");
        appendLines(source, 0, 100);
        Map<String, String> props = workerProps(prefix);

        try (Worker first = Worker.start(props)) {
            create(first, "lines-source", Map.of("connector.class", LineFileConnectors.Source.class.getName(),
                    "tasks.max", "1", "file", source.toString(), "topic", topic));
            create(first, "lines-sink", Map.of("connector.class", LineFileConnectors.Sink.class.getName(),
                    "tasks.max", "2", "file", sink.toString(), "topics", topic));
            waitFor(() -> LineFileConnectors.readLines(sink).size() >= 100, "the sink wrote the first 100 lines");
        }
        // The worker verified its config topic is exactly compact before it started;
        // so are its offsets and status topics.
        for (String internal : List.of(prefix + "-configs", prefix + "-offsets", prefix + "-status")) {
            assertEquals("compact", Cluster.cleanupPolicy(internal), internal);
        }
        // What a schema registry checks of its _schemas topic at start: one partition, compact.
        try (Admin admin = Cluster.admin()) {
            String configs = prefix + "-configs";
            int partitions = admin.describeTopics(List.of(configs)).allTopicNames().get(30, TimeUnit.SECONDS).get(configs).partitions().size();
            assertEquals(1, partitions, "Connect's config topic has one partition");
        }

        appendLines(source, 100, 200);
        try (Worker restarted = Worker.start(props)) {
            waitFor(() -> LineFileConnectors.readLines(sink).size() >= 200, "the restarted worker's sink wrote 200 lines");
            String connectors = get(restarted, "/connectors");
            assertTrue(connectors.contains("\"lines-source\"") && connectors.contains("\"lines-sink\""),
                    "the connectors' configs survived the restart: " + connectors);

            try (Worker second = Worker.start(props)) {
                waitFor(() -> taskWorkers(restarted).size() == 2, "the tasks spread over both workers");
                appendLines(source, 200, 300);
                waitFor(() -> LineFileConnectors.readLines(sink).size() >= 300, "the sink wrote 300 lines with two workers");
            }
        }

        List<String> expected = IntStream.range(0, 300).mapToObj(ConnectTest::line).toList();
        List<String> inTopic = Cluster.readAll(topic).stream().map(r -> r.value()).toList();
        assertEquals(new TreeSet<>(expected), new TreeSet<>(inTopic), "every line reached the topic");
        assertEquals(300, inTopic.size(), "each line once: the source resumed at its stored offset");
        List<String> written = new ArrayList<>(LineFileConnectors.readLines(sink));
        assertEquals(300, written.size(), "each line written once by the sink");
        assertEquals(new TreeSet<>(expected), new TreeSet<>(written));
    }

    @Test
    void anExactlyOnceSourceWritesRecordsAndOffsetsInTransactions() throws Exception {
        String prefix = Cluster.uniqueTopic("connect-eos");
        String topic = prefix + "-lines";
        Map<String, String> batches = Map.of("pg_kafka.storage", "batches");
        Cluster.createTopic(topic, 1, batches);
        Path source = Files.createTempDirectory("pg-kafka-connect-eos").resolve("source.txt");
        appendLines(source, 0, 100);
        Map<String, String> props = workerProps(prefix);
        props.put("exactly.once.source.support", "enabled");
        // KIP-605: topic configs for the internal topics the worker creates.
        for (String internal : List.of("config.storage.", "offset.storage.", "status.storage.")) {
            props.put(internal + "pg_kafka.storage", "batches");
        }
        try (Worker first = Worker.start(props)) {
            create(first, "eos-source", Map.of("connector.class", LineFileConnectors.Source.class.getName(),
                    "tasks.max", "1", "file", source.toString(), "topic", topic, "exactly.once.support", "requested"));
            waitFor(() -> committedLines(topic).size() >= 100, "100 lines committed");
        }
        appendLines(source, 100, 150);
        try (Worker restarted = Worker.start(props)) {
            waitFor(() -> committedLines(topic).size() >= 150, "the restarted worker's source committed 150 lines");
            Thread.sleep(1000); // anything sent twice would be committed by now
        }
        List<String> expected = IntStream.range(0, 150).mapToObj(ConnectTest::line).toList();
        assertEquals(expected, committedLines(topic), "each line once, in order: records and offsets commit together");
        String taskTransactions = Cluster.psql("SELECT count(*) FROM kafka.transactions WHERE transactional_id = '"
                + prefix + "-workers-eos-source-0' AND state = 'CompleteCommit'");
        assertEquals("1", taskTransactions, "the task's producer is transactional (Connect's id: group, connector, task)");
    }

    private static List<String> committedLines(String topic) {
        try (var consumer = Cluster.consumer(null, Map.of("isolation.level", "read_committed"))) {
            return Cluster.readAll(consumer, topic).stream().map(r -> r.value()).toList();
        }
    }

    private static String line(int i) {
        return "line-" + i;
    }

    private static void appendLines(Path file, int from, int to) throws Exception {
        StringBuilder text = new StringBuilder();
        IntStream.range(from, to).forEach(i -> text.append(line(i)).append('\n'));
        synchronized (LineFileConnectors.class) {
            Files.writeString(file, text, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        }
    }

    /** Creates a connector, retrying while the worker is still joining its group. */
    private static void create(Worker worker, String name, Map<String, String> config) throws Exception {
        StringBuilder json = new StringBuilder("{\"name\":\"" + name + "\",\"config\":{");
        config.forEach((k, v) -> json.append('"').append(k).append("\":\"").append(v).append("\","));
        json.setCharAt(json.length() - 1, '}');
        json.append('}');
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (true) {
            HttpRequest request = HttpRequest.newBuilder(worker.url().resolve("/connectors"))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(json.toString())).build();
            HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() == 201) {
                return;
            }
            assertTrue(System.nanoTime() < deadline, "creating " + name + ": " + response.statusCode() + " " + response.body());
            Thread.sleep(500);
        }
    }

    private static String get(Worker worker, String path) {
        try {
            HttpRequest request = HttpRequest.newBuilder(worker.url().resolve(path)).GET().build();
            return HTTP.send(request, HttpResponse.BodyHandlers.ofString()).body();
        } catch (Exception e) {
            throw new AssertionError("GET " + path, e);
        }
    }

    /** The workers the sink's and source's tasks are on. */
    private static Set<String> taskWorkers(Worker worker) {
        Set<String> workers = new TreeSet<>();
        for (String connector : List.of("lines-source", "lines-sink")) {
            String status = get(worker, "/connectors/" + connector + "/status");
            int tasks = status.indexOf("\"tasks\"");
            if (tasks < 0) {
                continue;
            }
            Matcher m = Pattern.compile("\"worker_id\":\"([^\"]+)\"").matcher(status.substring(tasks));
            while (m.find()) {
                workers.add(m.group(1));
            }
        }
        return workers;
    }

    private static void waitFor(BooleanSupplier condition, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        while (!condition.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, what + " within 90 s");
            Thread.sleep(250);
        }
    }
}
