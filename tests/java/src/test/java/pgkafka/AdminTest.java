package pgkafka;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.junit.jupiter.api.Test;

/** Kafka's Java Admin client: every call a one-broker Kafka 4 cluster answers. */
class AdminTest {
    private static <T> T get(KafkaFuture<T> future) throws Exception {
        return future.get(30, TimeUnit.SECONDS);
    }

    private static Throwable cause(KafkaFuture<?> future) {
        ExecutionException failed = assertThrows(ExecutionException.class, () -> future.get(30, TimeUnit.SECONDS));
        return failed.getCause();
    }

    private static void produce(String topic, int partition, int count, long firstTimestamp) throws Exception {
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            for (int i = 0; i < count; i++) {
                producer.send(new ProducerRecord<>(topic, partition, firstTimestamp + i, "k", "v" + i));
            }
            producer.flush();
        }
    }

    @Test
    void topicsAreCreatedDescribedListedGrownAndDeleted() throws Exception {
        String topic = Cluster.uniqueTopic("admin-topics");
        try (Admin admin = Cluster.admin()) {
            get(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1).configs(Map.of("retention.ms", "3600000")))).all());
            assertInstanceOf(TopicExistsException.class, cause(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()));
            assertTrue(get(admin.listTopics().names()).contains(topic));
            TopicDescription description = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
            assertEquals(2, description.partitions().size());
            assertNotNull(description.topicId());
            Node leader = description.partitions().get(0).leader();
            assertEquals(List.of(leader), description.partitions().get(0).replicas());
            assertEquals(List.of(leader), description.partitions().get(0).isr());
            // By id too.
            assertEquals(topic, get(admin.describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(
                    List.of(description.topicId()))).allTopicIds()).get(description.topicId()).name());

            get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
            assertEquals(5, get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size());

            get(admin.deleteTopics(List.of(topic)).all());
            assertFalse(get(admin.listTopics().names()).contains(topic));
            assertInstanceOf(UnknownTopicOrPartitionException.class, cause(admin.describeTopics(List.of(topic)).allTopicNames()));
        }
    }

    @Test
    void topicConfigsAreDescribedWithTheirSourcesAndAlteredIncrementally() throws Exception {
        String topic = Cluster.uniqueTopic("admin-configs");
        ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        try (Admin admin = Cluster.admin()) {
            get(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1).configs(Map.of("retention.ms", "7200000")))).all());
            Config config = get(admin.describeConfigs(List.of(resource)).all()).get(resource);
            assertEquals("7200000", config.get("retention.ms").value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, config.get("retention.ms").source());
            assertNotNull(config.get("max.message.bytes"));
            assertFalse(config.get("max.message.bytes").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG);

            get(admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.bytes", "1048576"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
            config = get(admin.describeConfigs(List.of(resource)).all()).get(resource);
            assertEquals("1048576", config.get("retention.bytes").value());
            assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, config.get("retention.bytes").source());
            assertFalse(config.get("retention.ms").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "deleted: a default again");

            ConfigResource brokerResource = new ConfigResource(ConfigResource.Type.BROKER, "1");
            Config broker = get(admin.describeConfigs(List.of(brokerResource)).all()).get(brokerResource);
            for (String name : List.of("advertised.listeners", "log.retention.ms", "num.partitions", "default.replication.factor")) {
                assertNotNull(broker.get(name), name);
            }
            assertEquals("1", broker.get("default.replication.factor").value());
        }
    }

    @Test
    void theClusterIsOneBrokerThatIsAlsoController() throws Exception {
        try (Admin admin = Cluster.admin()) {
            DescribeClusterResult cluster = admin.describeCluster();
            Collection<Node> nodes = get(cluster.nodes());
            assertEquals(1, nodes.size());
            assertEquals(nodes.iterator().next(), get(cluster.controller()));
            assertNotNull(get(cluster.clusterId()));
            assertTrue(get(admin.listPartitionReassignments().reassignments()).isEmpty());
            assertTrue(get(admin.describeClientQuotas(ClientQuotaFilter.all()).entities()).isEmpty());
        }
    }

    @Test
    void consumerGroupsAreListedDescribedAndTheirOffsetsAlteredAndDeleted() throws Exception {
        String topic = Cluster.uniqueTopic("admin-groups");
        String group = topic + "-group";
        Cluster.createTopic(topic, 2, Map.of());
        produce(topic, 0, 10, System.currentTimeMillis());
        TopicPartition p0 = new TopicPartition(topic, 0);
        TopicPartition p1 = new TopicPartition(topic, 1);
        try (Admin admin = Cluster.admin()) {
            try (KafkaConsumer<String, String> consumer = Cluster.consumer(group, Map.of())) {
                consumer.subscribe(List.of(topic));
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                int read = 0;
                while (read < 10 && System.nanoTime() < deadline) {
                    read += consumer.poll(Duration.ofMillis(300)).count();
                }
                consumer.commitSync();
                ConsumerGroupDescription described = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
                assertEquals(1, described.members().size());
                assertEquals(Set.of(p0, p1), described.members().iterator().next().assignment().topicPartitions());
                assertTrue(get(admin.listGroups().all()).stream().map(GroupListing::groupId).anyMatch(group::equals));
                // A member subscribes to the topic: its offsets cannot be deleted, nor the group.
                assertInstanceOf(org.apache.kafka.common.errors.GroupSubscribedToTopicException.class,
                        cause(admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all()));
                assertInstanceOf(GroupNotEmptyException.class, cause(admin.deleteConsumerGroups(List.of(group)).all()));
            }
            Map<TopicPartition, OffsetAndMetadata> offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            assertEquals(10, offsets.get(p0).offset());
            get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(3), p1, new OffsetAndMetadata(0))).all());
            offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            assertEquals(3, offsets.get(p0).offset());
            assertEquals(0, offsets.get(p1).offset());
            get(admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all());
            offsets = get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            assertEquals(Set.of(p0), offsets.keySet());
            get(admin.deleteConsumerGroups(List.of(group)).all());
            assertTrue(get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).isEmpty());
        }
    }

    @Test
    void listOffsetsAndDeleteRecords() throws Exception {
        String topic = Cluster.uniqueTopic("admin-offsets");
        Cluster.createTopic(topic, 1, Map.of());
        long base = 1_650_000_000_000L;
        produce(topic, 0, 10, base);
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of())) {
            // The newest timestamp is not the last record's.
            producer.send(new ProducerRecord<>(topic, 0, base + 100, "k", "max")).get(30, TimeUnit.SECONDS);
            producer.send(new ProducerRecord<>(topic, 0, base + 50, "k", "after")).get(30, TimeUnit.SECONDS);
        }
        TopicPartition partition = new TopicPartition(topic, 0);
        try (Admin admin = Cluster.admin()) {
            assertEquals(0, offset(admin, partition, OffsetSpec.earliest()).offset());
            assertEquals(12, offset(admin, partition, OffsetSpec.latest()).offset());
            assertEquals(4, offset(admin, partition, OffsetSpec.forTimestamp(base + 4)).offset());
            ListOffsetsResult.ListOffsetsResultInfo max = offset(admin, partition, OffsetSpec.maxTimestamp());
            assertEquals(10, max.offset());
            assertEquals(base + 100, max.timestamp());

            long low = get(admin.deleteRecords(Map.of(partition, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(partition)).lowWatermark();
            assertEquals(5, low);
            assertEquals(5, offset(admin, partition, OffsetSpec.earliest()).offset());
            assertEquals(List.of("v5", "v6", "v7", "v8", "v9", "max", "after"),
                    Cluster.readAll(topic).stream().map(r -> r.value()).toList());
        }
    }

    private static ListOffsetsResult.ListOffsetsResultInfo offset(Admin admin, TopicPartition partition, OffsetSpec spec) throws Exception {
        return get(admin.listOffsets(Map.of(partition, spec)).partitionResult(partition));
    }

    @Test
    void aclsAreCreatedDescribedAndDeleted() throws Exception {
        String topic = Cluster.uniqueTopic("admin-acls");
        Cluster.psql("DROP ROLE IF EXISTS java_acl_user; CREATE ROLE java_acl_user LOGIN");
        AclBinding binding = new AclBinding(new ResourcePattern(ResourceType.TOPIC, topic, PatternType.LITERAL),
                new AccessControlEntry("User:java_acl_user", "*", AclOperation.READ, AclPermissionType.ALLOW));
        AclBindingFilter filter = new AclBindingFilter(new ResourcePatternFilter(ResourceType.TOPIC, topic, PatternType.ANY),
                AccessControlEntryFilter.ANY);
        try (Admin admin = Cluster.admin()) {
            get(admin.createAcls(List.of(binding)).all());
            assertEquals(List.of(binding), List.copyOf(get(admin.describeAcls(filter).values())));
            assertEquals(List.of(binding), List.copyOf(get(admin.deleteAcls(List.of(filter)).all())));
            assertTrue(get(admin.describeAcls(filter).values()).isEmpty());
        }
    }

    @Test
    void logDirsShowEveryPartitionWithASize() throws Exception {
        String topic = Cluster.uniqueTopic("admin-logdirs");
        Cluster.createTopic(topic, 2, Map.of());
        produce(topic, 0, 100, System.currentTimeMillis());
        try (Admin admin = Cluster.admin()) {
            Map<Integer, Map<String, LogDirDescription>> dirs = get(admin.describeLogDirs(List.of(1)).allDescriptions());
            assertEquals(Set.of(1), dirs.keySet());
            assertEquals(1, dirs.get(1).size(), "one log dir: the database");
            LogDirDescription dir = dirs.get(1).values().iterator().next();
            assertEquals(null, dir.error());
            ReplicaInfo written = dir.replicaInfos().get(new TopicPartition(topic, 0));
            ReplicaInfo empty = dir.replicaInfos().get(new TopicPartition(topic, 1));
            assertNotNull(written);
            assertNotNull(empty);
            assertTrue(written.size() > 0, "a partition holding 100 records has a size: " + written.size());
            assertEquals(0, empty.size());
            assertEquals(0, written.offsetLag());
            assertTrue(dir.totalBytes().isPresent() && dir.usableBytes().isPresent());

            Map<org.apache.kafka.common.TopicPartitionReplica, ?> replicas = get(admin.describeReplicaLogDirs(List.of(
                    new org.apache.kafka.common.TopicPartitionReplica(topic, 0, 1))).all());
            assertEquals(1, replicas.size());
        }
    }

    @Test
    void producersOfAPartitionAreDescribed() throws Exception {
        String topic = Cluster.uniqueTopic("admin-producers");
        Cluster.createTopic(topic, 1, Map.of());
        TopicPartition partition = new TopicPartition(topic, 0);
        try (KafkaProducer<String, String> producer = Cluster.producer(Map.of("enable.idempotence", "true"))) {
            for (int i = 0; i < 5; i++) {
                producer.send(new ProducerRecord<>(topic, 0, "k", "v" + i)).get(30, TimeUnit.SECONDS);
            }
        }
        try (Admin admin = Cluster.admin()) {
            DescribeProducersResult.PartitionProducerState state = get(admin.describeProducers(List.of(partition)).partitionResult(partition));
            assertEquals(1, state.activeProducers().size());
            var producer = state.activeProducers().get(0);
            assertTrue(producer.producerId() >= 0);
            assertEquals(4, producer.lastSequence());
            assertTrue(producer.lastTimestamp() > 0);
            assertEquals(java.util.OptionalLong.empty(), producer.currentTransactionStartOffset());
        }
    }

    @Test
    void electLeadersIsNeverNeeded() throws Exception {
        String topic = Cluster.uniqueTopic("admin-elect");
        Cluster.createTopic(topic, 1, Map.of());
        TopicPartition partition = new TopicPartition(topic, 0);
        try (Admin admin = Cluster.admin()) {
            Map<TopicPartition, Optional<Throwable>> result = get(admin.electLeaders(ElectionType.PREFERRED, Set.of(partition)).partitions());
            assertInstanceOf(ElectionNotNeededException.class, result.get(partition).orElseThrow());
            assertTrue(get(admin.electLeaders(ElectionType.PREFERRED, null).partitions()).isEmpty());
        }
    }
}
