package pgkafka;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The running pg_kafka cluster `make java-test` points the tests at, through the environment
 * `make e2e-test` sets: PGKAFKA_E2E_BOOTSTRAP (the PLAINTEXT listener), PGKAFKA_E2E_PG_PORT,
 * PGKAFKA_E2E_SASL_PLAINTEXT. Helpers make clients, unique topics and run SQL through psql.
 */
final class Cluster {
    private Cluster() {}

    static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException(name + " is not set: run these tests through `make java-test`");
        }
        return value;
    }

    static String bootstrap() {
        return env("PGKAFKA_E2E_BOOTSTRAP");
    }

    static String saslPlaintext() {
        return env("PGKAFKA_E2E_SASL_PLAINTEXT");
    }

    /** A topic name no other test (or earlier run on the same cluster) uses. */
    static String uniqueTopic(String prefix) {
        return "java-" + prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static Properties adminProps() {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap());
        props.put("request.timeout.ms", "20000");
        props.put("default.api.timeout.ms", "30000");
        return props;
    }

    static Admin admin() {
        return Admin.create(adminProps());
    }

    static Properties producerProps() {
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        return props;
    }

    static KafkaProducer<String, String> producer(Map<String, String> overrides) {
        Properties props = producerProps();
        props.putAll(overrides);
        return new KafkaProducer<>(props);
    }

    static KafkaProducer<byte[], byte[]> bytesProducer(Map<String, String> overrides) {
        Properties props = producerProps();
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.putAll(overrides);
        return new KafkaProducer<>(props);
    }

    static Properties consumerProps(String group) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        if (group != null) {
            props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        }
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        return props;
    }

    static KafkaConsumer<String, String> consumer(String group, Map<String, String> overrides) {
        Properties props = consumerProps(group);
        props.putAll(overrides);
        return new KafkaConsumer<>(props);
    }

    static KafkaConsumer<byte[], byte[]> bytesConsumer() {
        Properties props = consumerProps(null);
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return new KafkaConsumer<>(props);
    }

    static void createTopic(String name, int partitions, Map<String, String> configs) throws Exception {
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all().get(30, TimeUnit.SECONDS);
        }
    }

    /** Reads every record of `topic` up to its end offsets as they are now (no group). */
    static <K, V> List<ConsumerRecord<K, V>> readAll(KafkaConsumer<K, V> consumer, String topic) {
        List<TopicPartition> partitions = new ArrayList<>();
        consumer.partitionsFor(topic, Duration.ofSeconds(30)).forEach(p -> partitions.add(new TopicPartition(topic, p.partition())));
        consumer.assign(partitions);
        consumer.seekToBeginning(partitions);
        Map<TopicPartition, Long> end = consumer.endOffsets(partitions, Duration.ofSeconds(30));
        List<ConsumerRecord<K, V>> records = new ArrayList<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (partitions.stream().anyMatch(p -> consumer.position(p) < end.get(p))) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("did not reach the end offsets " + end + " of " + topic + " within 60 s");
            }
            consumer.poll(Duration.ofMillis(500)).forEach(records::add);
        }
        return records;
    }

    static List<ConsumerRecord<String, String>> readAll(String topic) {
        try (KafkaConsumer<String, String> consumer = consumer(null, Map.of())) {
            return readAll(consumer, topic);
        }
    }

    /** A topic's cleanup.policy, as DescribeConfigs gives it. */
    static String cleanupPolicy(String topic) throws Exception {
        try (Admin admin = admin()) {
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(Set.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
            return config.get(TopicConfig.CLEANUP_POLICY_CONFIG).value();
        }
    }

    /** Runs SQL through psql as the superuser; returns trimmed, unaligned output. */
    static String psql(String sql) {
        return run(List.of("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres",
                "-d", "postgres", "-p", env("PGKAFKA_E2E_PG_PORT"), "-c", sql), 60).trim();
    }

    /** Runs a command, fails the test unless it exits 0 within `seconds`; returns its stdout. */
    static String run(List<String> command, int seconds) {
        Result result = runResult(command, seconds);
        if (result.exit != 0) {
            throw new AssertionError(String.join(" ", command) + " exited " + result.exit + ": " + result.stderr + result.stdout);
        }
        return result.stdout;
    }

    record Result(int exit, String stdout, String stderr) {}

    static Result runResult(List<String> command, int seconds) {
        return runResult(command, seconds, "");
    }

    /** Runs a command with `input` on its standard input; returns its exit code and output. */
    static Result runResult(List<String> command, int seconds, String input) {
        try {
            Process process = new ProcessBuilder(command).redirectInput(ProcessBuilder.Redirect.PIPE).start();
            process.getOutputStream().write(input.getBytes(StandardCharsets.UTF_8));
            process.getOutputStream().close();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ByteArrayOutputStream err = new ByteArrayOutputStream();
            Thread outReader = drain(process.getInputStream(), out);
            Thread errReader = drain(process.getErrorStream(), err);
            if (!process.waitFor(seconds, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                throw new AssertionError(String.join(" ", command) + " did not finish within " + seconds + " s");
            }
            outReader.join();
            errReader.join();
            return new Result(process.exitValue(), out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } catch (IOException | InterruptedException e) {
            throw new AssertionError("cannot run " + command, e);
        }
    }

    private static Thread drain(InputStream in, ByteArrayOutputStream to) {
        Thread thread = new Thread(() -> {
            try {
                in.transferTo(to);
            } catch (IOException ignored) {
                // the process went away; what it wrote so far is kept
            }
        });
        thread.start();
        return thread;
    }

    /** Sets a reloadable pg_kafka setting for the whole cluster and waits until the worker has it. */
    static void setCluster(String setting, String value) throws InterruptedException {
        psql("ALTER SYSTEM SET " + setting + " = '" + value + "'");
        psql("SELECT pg_reload_conf()");
        Thread.sleep(1500);
    }

    static void resetCluster(String setting) throws InterruptedException {
        psql("ALTER SYSTEM RESET " + setting);
        psql("SELECT pg_reload_conf()");
        Thread.sleep(1500);
    }
}
