package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;

/** A stateless Kafka Streams topology (filter, map, branch) at_least_once. */
class StreamsTest {

    private static Topology topology(String input, String evens, String odds) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> numbers = builder.stream(input);
        numbers.filter((key, value) -> !value.startsWith("skip"))
                .map((key, value) -> KeyValue.pair(key.toUpperCase(), "n=" + value))
                .split()
                .branch((key, value) -> Integer.parseInt(value.substring(2)) % 2 == 0,
                        Branched.withConsumer(s -> s.to(evens, Produced.with(Serdes.String(), Serdes.String()))))
                .defaultBranch(Branched.withConsumer(s -> s.to(odds, Produced.with(Serdes.String(), Serdes.String()))));
        return builder.build();
    }

    @Test
    void filterMapAndBranchWriteExactlyTheExpectedRecords() throws Exception {
        String input = Cluster.uniqueTopic("streams-in");
        String evens = Cluster.uniqueTopic("streams-evens");
        String odds = Cluster.uniqueTopic("streams-odds");
        Cluster.createTopic(input, 3, Map.of());
        Cluster.createTopic(evens, 1, Map.of());
        Cluster.createTopic(odds, 1, Map.of());
        List<String> expectedEvens = new ArrayList<>();
        List<String> expectedOdds = new ArrayList<>();
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (int i = 0; i < 300; i++) {
                // One key: the records stay in one input partition, so the outputs' order is known.
                producer.send(new ProducerRecord<>(input, "key", i % 10 == 9 ? "skip" + i : Integer.toString(i)));
                if (i % 10 != 9) {
                    (i % 2 == 0 ? expectedEvens : expectedOdds).add("KEY=n=" + i);
                }
            }
            producer.flush();
        }
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, input + "-app");
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, Cluster.bootstrap());
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        props.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("pg-kafka-streams").toString());
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        try (KafkaStreams streams = new KafkaStreams(topology(input, evens, odds), props)) {
            streams.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
            while (outputs(evens).size() + outputs(odds).size() < expectedEvens.size() + expectedOdds.size()
                    && System.nanoTime() < deadline) {
                assertEquals(false, streams.state() == KafkaStreams.State.ERROR, "the application failed");
                Thread.sleep(500);
            }
            streams.close(Duration.ofSeconds(30));
        }
        assertEquals(expectedEvens, outputs(evens));
        assertEquals(expectedOdds, outputs(odds));
        assertEquals("t", Cluster.psql("SELECT count(*) > 0 FROM kafka.consumer_offsets WHERE group_id = '" + input + "-app'"),
                "the application committed its position");
    }

    private static List<String> outputs(String topic) {
        return Cluster.readAll(topic).stream().map((ConsumerRecord<String, String> r) -> r.key() + "=" + r.value()).toList();
    }
}
