package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;

/**
 * Kafka's command-line tools as people run them (kafka-topics.sh and the others are shell
 * wrappers around these main classes), each in a JVM of its own on the kafka-tools classpath.
 */
class ToolsTest {
    private static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
    private static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";
    private static final String GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    private static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
    private static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
    private static final String PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance";
    private static final String CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance";
    private static final String TRANSACTIONS = "org.apache.kafka.tools.TransactionsCommand";

    private static Cluster.Result tool(String mainClass, String input, String... args) {
        String classpath;
        try {
            classpath = Files.readString(Path.of(System.getProperty("tools.classpath"))).trim();
        } catch (IOException e) {
            throw new AssertionError("the tools' classpath was not written by the build", e);
        }
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-Xmx256m", "-cp", classpath, mainClass));
        command.addAll(Arrays.asList(args));
        return Cluster.runResult(command, 120, input);
    }

    /** Runs a tool that must succeed; returns its standard output. */
    private static String ok(String mainClass, String input, String... args) {
        Cluster.Result result = tool(mainClass, input, args);
        assertEquals(0, result.exit(), mainClass + " " + String.join(" ", args) + " failed:\n" + result.stderr() + result.stdout());
        return result.stdout();
    }

    private static String bootstrap() {
        return Cluster.bootstrap();
    }

    @Test
    void kafkaTopicsCreatesListsDescribesAltersAndDeletes() {
        String topic = Cluster.uniqueTopic("tool-topics");
        ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--create", "--topic", topic, "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=86400000");
        assertTrue(ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--list").lines().anyMatch(topic::equals));
        String described = ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--describe", "--topic", topic);
        assertTrue(described.contains("PartitionCount: 3"), described);
        assertTrue(described.contains("retention.ms=86400000"), described);
        ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--alter", "--topic", topic, "--partitions", "4");
        described = ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--describe", "--topic", topic);
        assertTrue(described.contains("PartitionCount: 4"), described);
        ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--delete", "--topic", topic);
        assertTrue(ok(TOPICS, "", "--bootstrap-server", bootstrap(), "--list").lines().noneMatch(topic::equals));
    }

    @Test
    void kafkaConfigsAltersAndDescribesATopic() throws Exception {
        String topic = Cluster.uniqueTopic("tool-configs");
        Cluster.createTopic(topic, 1, Map.of());
        ok(CONFIGS, "", "--bootstrap-server", bootstrap(), "--entity-type", "topics", "--entity-name", topic, "--alter",
                "--add-config", "retention.ms=123456,retention.bytes=7654321");
        String described = ok(CONFIGS, "", "--bootstrap-server", bootstrap(), "--entity-type", "topics", "--entity-name", topic,
                "--describe");
        assertTrue(described.contains("retention.ms=123456"), described);
        assertTrue(described.contains("retention.bytes=7654321"), described);
        ok(CONFIGS, "", "--bootstrap-server", bootstrap(), "--entity-type", "topics", "--entity-name", topic, "--alter",
                "--delete-config", "retention.bytes");
        described = ok(CONFIGS, "", "--bootstrap-server", bootstrap(), "--entity-type", "topics", "--entity-name", topic, "--describe");
        assertTrue(!described.contains("retention.bytes=7654321"), described);
        String broker = ok(CONFIGS, "", "--bootstrap-server", bootstrap(), "--entity-type", "brokers", "--entity-name", "1",
                "--describe", "--all");
        assertTrue(broker.contains("num.partitions="), broker);
    }

    @Test
    void consoleProducerAndConsumerRoundTripKeyedLines() throws Exception {
        String topic = Cluster.uniqueTopic("tool-console");
        Cluster.createTopic(topic, 1, Map.of());
        ok(CONSOLE_PRODUCER, "a:one\nb:two\nc:three\n", "--bootstrap-server", bootstrap(), "--topic", topic,
                "--property", "parse.key=true", "--property", "key.separator=:");
        String consumed = ok(CONSOLE_CONSUMER, "", "--bootstrap-server", bootstrap(), "--topic", topic, "--from-beginning",
                "--max-messages", "3", "--timeout-ms", "30000", "--formatter-property", "print.key=true",
                "--formatter-property", "key.separator=:");
        assertEquals(List.of("a:one", "b:two", "c:three"), consumed.lines().toList());
    }

    @Test
    void kafkaConsumerGroupsListsDescribesResetsAndDeletesOffsets() throws Exception {
        String topic = Cluster.uniqueTopic("tool-groups");
        String group = topic + "-group";
        Cluster.createTopic(topic, 2, Map.of());
        ok(CONSOLE_PRODUCER, "1\n2\n3\n4\n", "--bootstrap-server", bootstrap(), "--topic", topic);
        ok(CONSOLE_CONSUMER, "", "--bootstrap-server", bootstrap(), "--topic", topic, "--group", group, "--from-beginning",
                "--max-messages", "4", "--timeout-ms", "30000");
        assertTrue(ok(GROUPS, "", "--bootstrap-server", bootstrap(), "--list").lines().anyMatch(group::equals));
        String described = ok(GROUPS, "", "--bootstrap-server", bootstrap(), "--describe", "--group", group);
        assertTrue(described.contains(topic), described);
        String committed = committed(group, topic);
        assertEquals(4, Arrays.stream(committed.split(",")).mapToLong(Long::parseLong).sum(), committed);

        String reset = ok(GROUPS, "", "--bootstrap-server", bootstrap(), "--group", group, "--topic", topic, "--reset-offsets",
                "--to-earliest", "--execute");
        assertTrue(reset.contains(topic), reset);
        assertEquals("0,0", committed(group, topic));

        ok(GROUPS, "", "--bootstrap-server", bootstrap(), "--delete-offsets", "--group", group, "--topic", topic + ":1");
        assertEquals("0", committed(group, topic));
        ok(GROUPS, "", "--bootstrap-server", bootstrap(), "--delete", "--group", group);
        assertEquals("", committed(group, topic));
    }

    private static String committed(String group, String topic) {
        return Cluster.psql("SELECT coalesce(string_agg(committed_offset::text, ',' ORDER BY partition), '') FROM kafka.consumer_lag"
                + " WHERE group_id = '" + group + "' AND topic = '" + topic + "'");
    }

    @Test
    void theProducerAndConsumerPerformanceToolsRun() throws Exception {
        String topic = Cluster.uniqueTopic("tool-perf");
        Cluster.createTopic(topic, 1, Map.of());
        String produced = ok(PRODUCER_PERF, "", "--topic", topic, "--num-records", "20000", "--record-size", "100",
                "--throughput", "-1", "--producer-props", "bootstrap.servers=" + bootstrap(), "acks=all");
        assertTrue(produced.contains("20000 records sent"), produced);
        String consumed = ok(CONSUMER_PERF, "", "--bootstrap-server", bootstrap(), "--topic", topic, "--messages", "20000",
                "--timeout", "30000");
        String last = consumed.lines().filter(l -> !l.isBlank()).reduce((a, b) -> b).orElse("");
        // start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, ...
        List<String> fields = Arrays.stream(last.split(",")).map(String::trim).collect(Collectors.toList());
        assertEquals("20000", fields.get(4), consumed);
        assertEquals("20000", Cluster.psql("SELECT count(*) FROM kafka.topic_messages WHERE topic = '" + topic + "'"));
    }

    @Test
    void kafkaTransactionsListsAndDescribesAnOpenTransaction() throws Exception {
        String topic = Cluster.uniqueTopic("tool-txn");
        Cluster.createTopic(topic, 1, Map.of("pg_kafka.storage", "batches"));
        String id = "tool-txn-" + java.util.UUID.randomUUID();
        try (org.apache.kafka.clients.producer.KafkaProducer<String, String> producer = Cluster.producer(Map.of("transactional.id", id))) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new org.apache.kafka.clients.producer.ProducerRecord<>(topic, 0, "k", "v"));
            producer.flush();
            String listed = ok(TRANSACTIONS, "", "--bootstrap-server", bootstrap(), "list");
            assertTrue(listed.lines().anyMatch(l -> l.contains(id) && l.contains("Ongoing")), listed);
            String described = ok(TRANSACTIONS, "", "--bootstrap-server", bootstrap(), "describe", "--transactional-id", id);
            assertTrue(described.contains("Ongoing") && described.contains(topic + "-0"), described);
            String producers = ok(TRANSACTIONS, "", "--bootstrap-server", bootstrap(), "describe-producers", "--topic", topic,
                    "--partition", "0");
            assertTrue(producers.lines().count() >= 2, producers);
            producer.commitTransaction();
        }
        String described = ok(TRANSACTIONS, "", "--bootstrap-server", bootstrap(), "describe", "--transactional-id", id);
        assertTrue(described.contains("CompleteCommit"), described);
    }
}
