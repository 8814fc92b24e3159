package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Kafka's Java consumer with the classic group protocol. */
class ConsumerTest {

    private static void produce(String topic, int partitions, int perPartition) throws Exception {
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (int i = 0; i < perPartition; i++) {
                for (int p = 0; p < partitions; p++) {
                    producer.send(new ProducerRecord<>(topic, p, "k", p + ":" + i));
                }
            }
            producer.flush();
        }
    }

    /**
     * Members of one group, started one after another, share the partitions; each commits after
     * every poll and when partitions are taken from it, so the group reads every record once.
     */
    @ParameterizedTest(name = "{0} with {1} members")
    @CsvSource({"range,1", "range,2", "range,3", "cooperative-sticky,1", "cooperative-sticky,2", "cooperative-sticky,3"})
    void aGroupReadsEveryRecordOnceAcrossRebalances(String assignor, int members) throws Exception {
        String topic = Cluster.uniqueTopic("group-" + assignor + members);
        int partitions = 6;
        int perPartition = 200;
        Cluster.createTopic(topic, partitions, Map.of());
        produce(topic, partitions, perPartition);
        String group = topic + "-group";
        String strategy = assignor.equals("range") ? "org.apache.kafka.clients.consumer.RangeAssignor"
                : "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
        List<String> seen = new CopyOnWriteArrayList<>();
        AtomicBoolean done = new AtomicBoolean();
        Map<Integer, Set<TopicPartition>> finalAssignments = new ConcurrentHashMap<>();
        // Every member notes its assignment before any leaves: a member that closed first
        // would hand its partitions to one still polling, which would then note them too.
        CountDownLatch noted = new CountDownLatch(members);
        ExecutorService pool = Executors.newFixedThreadPool(members);
        List<Future<?>> running = new ArrayList<>();
        for (int m = 0; m < members; m++) {
            int member = m;
            running.add(pool.submit(() -> {
                Map<String, String> overrides = Map.of("partition.assignment.strategy", strategy, "max.poll.records", "50");
                try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, overrides)) {
                    consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                        @Override
                        public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
                            try {
                                consumer.commitSync();
                            } catch (RebalanceInProgressException rebalancing) {
                                // The client's own check: a member closing while a cooperative
                                // rebalance is under way may not commit from this callback
                                // (it failed CI once, with the broker never asked). Members
                                // close only once every record was read, so nothing is lost.
                            }
                        }

                        @Override
                        public void onPartitionsAssigned(Collection<TopicPartition> assigned) {}
                    });
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
                    while (!done.get() && System.nanoTime() < deadline) {
                        ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                        records.forEach(r -> seen.add(r.value()));
                        try {
                            consumer.commitSync();
                        } catch (RebalanceInProgressException rebalancing) {
                            // As with Kafka: a cooperative rebalance is under way; the next
                            // poll completes it and the commit is made after it.
                            continue;
                        }
                        // Members joining later take partitions only once they have joined:
                        // keep the first member slow until every member is in.
                        if (seen.size() >= partitions * perPartition) {
                            done.set(true);
                        }
                        Thread.sleep(member == 0 && records.count() > 0 ? 100 : 0);
                    }
                    finalAssignments.put(member, new HashSet<>(consumer.assignment()));
                    noted.countDown();
                    noted.await(60, TimeUnit.SECONDS);
                }
                return null;
            }));
            Thread.sleep(1500);
        }
        for (Future<?> member : running) {
            member.get(120, TimeUnit.SECONDS);
        }
        pool.shutdown();
        assertEquals(partitions * perPartition, seen.size(), "every record read once");
        assertEquals(partitions * perPartition, new HashSet<>(seen).size(), "no record read twice");
        Set<TopicPartition> union = new HashSet<>();
        finalAssignments.values().forEach(union::addAll);
        assertEquals(partitions, union.size(), "the final assignment covers every partition");
        int assigned = finalAssignments.values().stream().mapToInt(Set::size).sum();
        assertEquals(partitions, assigned, "no partition assigned twice");
        try (var admin = Cluster.admin()) {
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            for (int p = 0; p < partitions; p++) {
                assertEquals(perPartition, committed.get(new TopicPartition(topic, p)).offset(), "partition " + p);
            }
        }
    }

    @Test
    void commitSyncAndCommitAsyncAreWhereARestartedConsumerResumes() throws Exception {
        String topic = Cluster.uniqueTopic("resume");
        Cluster.createTopic(topic, 1, Map.of());
        produce(topic, 1, 100);
        String group = topic + "-group";
        TopicPartition partition = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, Map.of("max.poll.records", "10"))) {
            consumer.subscribe(List.of(topic));
            int read = 0;
            while (read < 40) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                read += records.count();
                AtomicInteger callbacks = new AtomicInteger();
                consumer.commitAsync((offsets, e) -> callbacks.incrementAndGet());
            }
            consumer.commitSync(Map.of(partition, new OffsetAndMetadata(40, "halfway")));
        }
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, Map.of())) {
            consumer.subscribe(List.of(topic));
            ConsumerRecord<String, String> first = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (first == null && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    first = first == null ? r : first;
                }
            }
            assertNotNull(first);
            assertEquals(40, first.offset());
            OffsetAndMetadata committed = consumer.committed(Set.of(partition)).get(partition);
            assertEquals("halfway", committed.metadata());
        }
    }

    @Test
    void seekOffsetsForTimesAndTheEnds() throws Exception {
        String topic = Cluster.uniqueTopic("seek");
        Cluster.createTopic(topic, 1, Map.of());
        long base = 1_700_000_000_000L;
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (int i = 0; i < 20; i++) {
                producer.send(new ProducerRecord<>(topic, 0, base + i * 1000L, null, "v" + i));
            }
            producer.flush();
        }
        TopicPartition partition = new TopicPartition(topic, 0);
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(null, Map.of())) {
            consumer.assign(List.of(partition));
            Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(Map.of(partition, base + 5500));
            assertEquals(6, found.get(partition).offset());
            assertEquals(base + 6000, found.get(partition).timestamp());
            assertEquals(null, consumer.offsetsForTimes(Map.of(partition, base + 100_000)).get(partition), "after the last record");
            assertEquals(0L, consumer.beginningOffsets(List.of(partition)).get(partition));
            assertEquals(20L, consumer.endOffsets(List.of(partition)).get(partition));
            consumer.seek(partition, 13);
            assertEquals("v13", firstRecord(consumer).value());
            consumer.seekToEnd(List.of(partition));
            assertEquals(20, consumer.position(partition));
            consumer.seekToBeginning(List.of(partition));
            assertEquals("v0", firstRecord(consumer).value());
        }
    }

    private static ConsumerRecord<String, String> firstRecord(KafkaConsumer<String, String> consumer) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
            if (!records.isEmpty()) {
                return records.iterator().next();
            }
        }
        throw new AssertionError("no record within 30 s");
    }

    @Test
    void pausedPartitionsAreNotFetchedUntilResumed() throws Exception {
        String topic = Cluster.uniqueTopic("pause");
        Cluster.createTopic(topic, 2, Map.of());
        produce(topic, 2, 10);
        TopicPartition zero = new TopicPartition(topic, 0);
        TopicPartition one = new TopicPartition(topic, 1);
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(null, Map.of())) {
            consumer.assign(List.of(zero, one));
            consumer.pause(List.of(one));
            Map<Integer, Integer> perPartition = new HashMap<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(r -> perPartition.merge(r.partition(), 1, Integer::sum));
            }
            assertEquals(Map.of(0, 10), perPartition, "only the partition not paused");
            assertEquals(Set.of(one), consumer.paused());
            consumer.resume(List.of(one));
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (perPartition.getOrDefault(1, 0) < 10 && System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200)).forEach(r -> perPartition.merge(r.partition(), 1, Integer::sum));
            }
            assertEquals(Map.of(0, 10, 1, 10), perPartition);
        }
    }

    /** KIP-345: a static member that comes back within its session keeps its partitions, and nobody rebalances. */
    @Test
    void aReturningStaticMemberKeepsItsAssignmentWithoutARebalance() throws Exception {
        String topic = Cluster.uniqueTopic("static");
        Cluster.createTopic(topic, 4, Map.of());
        String group = topic + "-group";
        AtomicInteger otherAssignments = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        Set<TopicPartition> otherHolds = ConcurrentHashMap.newKeySet();
        ExecutorService pool = Executors.newSingleThreadExecutor();
        Future<?> other = pool.submit(() -> {
            try (KafkaConsumer<String, String> consumer =
                         Cluster.consumer(group, Map.of("group.instance.id", "static-b", "session.timeout.ms", "30000"))) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> revoked) {}

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                        otherAssignments.incrementAndGet();
                        otherHolds.clear();
                        otherHolds.addAll(assigned);
                    }
                });
                while (!stop.get()) {
                    consumer.poll(Duration.ofMillis(200));
                }
            }
            return null;
        });
        Map<String, String> staticA = Map.of("group.instance.id", "static-a", "session.timeout.ms", "30000");
        Set<TopicPartition> before;
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, staticA)) {
            consumer.subscribe(List.of(topic));
            before = waitForAssignment(consumer, a -> a.size() == 2 && otherHolds.size() == 2);
        }
        int rebalancesBefore = otherAssignments.get();
        Set<TopicPartition> after;
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, staticA)) {
            consumer.subscribe(List.of(topic));
            after = waitForAssignment(consumer, a -> !a.isEmpty());
            // Give a rebalance, if one were started, the time to reach the other member.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(4);
            while (System.nanoTime() < deadline) {
                consumer.poll(Duration.ofMillis(200));
            }
        }
        stop.set(true);
        other.get(60, TimeUnit.SECONDS);
        pool.shutdown();
        assertEquals(before, after, "the returning member got its partitions back");
        assertEquals(rebalancesBefore, otherAssignments.get(), "the other member saw no rebalance");
    }

    private static Set<TopicPartition> waitForAssignment(KafkaConsumer<String, String> consumer,
                                                         java.util.function.Predicate<Set<TopicPartition>> ready) {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            consumer.poll(Duration.ofMillis(200));
            if (ready.test(consumer.assignment())) {
                return new HashSet<>(consumer.assignment());
            }
        }
        throw new AssertionError("no assignment within 60 s: " + consumer.assignment());
    }

    /** Lag monitors read __consumer_offsets: commits appear there as Kafka's coordinator writes them. */
    @Test
    void theOffsetsTopicShowsEveryCommitInKafkasFormatAndRefusesWrites() throws Exception {
        String topic = Cluster.uniqueTopic("offsets-topic");
        String group = topic + "-group";
        Cluster.createTopic(topic, 1, Map.of());
        produce(topic, 1, 10);
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, Map.of())) {
            consumer.assign(List.of(new TopicPartition(topic, 0)));
            consumer.commitSync(Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(5, "meta")));
        }
        TopicPartition offsetsTopic = new TopicPartition("__consumer_offsets", 0);
        try (var admin = Cluster.admin()) {
            var description = admin.describeTopics(List.of("__consumer_offsets")).allTopicNames().get(30, TimeUnit.SECONDS);
            assertTrue(description.get("__consumer_offsets").isInternal());
            assertTrue(!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains("__consumer_offsets"), "Admin lists no internal topic by default");
        }
        java.nio.ByteBuffer found = null;
        try (KafkaConsumer<byte[], byte[]> consumer = Cluster.bytesConsumer()) {
            consumer.assign(List.of(offsetsTopic));
            consumer.seekToBeginning(List.of(offsetsTopic));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (found == null && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(300))) {
                    java.nio.ByteBuffer key = java.nio.ByteBuffer.wrap(record.key());
                    if (key.getShort() == 1 && readString(key).equals(group) && readString(key).equals(topic) && key.getInt() == 0) {
                        found = java.nio.ByteBuffer.wrap(record.value());
                    }
                }
            }
        }
        assertTrue(found != null, "the commit is in __consumer_offsets");
        assertEquals(3, found.getShort(), "value version 3");
        assertEquals(5, found.getLong());
        assertEquals(-1, found.getInt(), "no leader epoch");
        assertEquals("meta", readString(found));
        assertTrue(found.getLong() > 0, "a commit timestamp");
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("retries", "0", "enable.idempotence", "false"))) {
            var failed = org.junit.jupiter.api.Assertions.assertThrows(java.util.concurrent.ExecutionException.class,
                    () -> producer.send(new ProducerRecord<>("__consumer_offsets", 0, "k", "v")).get(30, TimeUnit.SECONDS));
            assertTrue(failed.getCause() instanceof org.apache.kafka.common.errors.InvalidTopicException, failed.getCause().toString());
        }
    }

    private static String readString(java.nio.ByteBuffer buffer) {
        byte[] bytes = new byte[buffer.getShort()];
        buffer.get(bytes);
        return new String(bytes, java.nio.charset.StandardCharsets.UTF_8);
    }

    @Test
    void aNewGroupWithAutoOffsetResetLatestSeesOnlyNewRecords() throws Exception {
        String topic = Cluster.uniqueTopic("latest");
        Cluster.createTopic(topic, 1, Map.of());
        produce(topic, 1, 5);
        try (KafkaConsumer<String, String> consumer = Cluster.consumer(topic + "-g", Map.of("auto.offset.reset", "latest"))) {
            consumer.subscribe(List.of(topic));
            waitForAssignment(consumer, a -> !a.isEmpty());
            assertEquals(5, consumer.position(new TopicPartition(topic, 0)));
            produce(topic, 1, 1);
            assertTrue(firstRecord(consumer).offset() == 5);
        }
    }
}
