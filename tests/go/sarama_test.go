package clienttests

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// The Kafka versions sarama is told the cluster speaks: its default, a 3.x broker, and
// 0.11 (record batches, OffsetCommit v2 and the other old versions long-lived apps send).
var saramaVersions = map[string]*sarama.KafkaVersion{"default": nil, "3.6": &sarama.V3_6_0_0, "0.11": &sarama.V0_11_0_2}

func saramaConfig(version *sarama.KafkaVersion) *sarama.Config {
	config := sarama.NewConfig()
	if version != nil {
		config.Version = *version
	}
	config.ClientID = "pg-kafka-go-tests"
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Group.Rebalance.Timeout = 20 * time.Second
	config.Metadata.Retry.Backoff = 200 * time.Millisecond
	return config
}

type groupHandler struct {
	mu   *sync.Mutex
	seen map[string]int
}

func (groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h groupHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(message.Value)]++
		h.mu.Unlock()
		session.MarkMessage(message, "")
	}
	return nil
}

// Admin creates a topic, a sync producer writes keyed messages with headers, a consumer
// group reads them all and commits, and the committed offsets are where the group ends.
func TestSaramaRoundTripAndConsumerGroup(t *testing.T) {
	for name, version := range saramaVersions {
		t.Run(name, func(t *testing.T) {
			topic := uniqueTopic("sarama-" + name)
			config := saramaConfig(version)
			admin, err := sarama.NewClusterAdmin([]string{bootstrap(t)}, config)
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			producer, err := sarama.NewSyncProducer([]string{bootstrap(t)}, config)
			if err != nil {
				t.Fatal(err)
			}
			const count = 90
			for i := 0; i < count; i++ {
				message := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i)),
					Value: sarama.StringEncoder(fmt.Sprintf("value-%d", i))}
				if version == nil || version.IsAtLeast(sarama.V0_11_0_0) {
					message.Headers = []sarama.RecordHeader{{Key: []byte("n"), Value: []byte(fmt.Sprint(i))}}
				}
				if _, _, err := producer.SendMessage(message); err != nil {
					t.Fatalf("send %d: %v", i, err)
				}
			}
			producer.Close()

			group, err := sarama.NewConsumerGroup([]string{bootstrap(t)}, topic+"-group", config)
			if err != nil {
				t.Fatal(err)
			}
			handler := groupHandler{mu: &sync.Mutex{}, seen: map[string]int{}}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				for ctx.Err() == nil {
					if err := group.Consume(ctx, []string{topic}, handler); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			for ctx.Err() == nil {
				handler.mu.Lock()
				n := len(handler.seen)
				handler.mu.Unlock()
				if n == count {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("consume: %v", err)
			}
			if err := group.Close(); err != nil {
				t.Fatal(err)
			}
			if len(handler.seen) != count {
				t.Fatalf("the group read %d of %d messages", len(handler.seen), count)
			}
			offsets, err := admin.ListConsumerGroupOffsets(topic+"-group", map[string][]int32{topic: {0, 1, 2}})
			if err != nil {
				t.Fatal(err)
			}
			var committed int64
			for _, block := range offsets.Blocks[topic] {
				committed += block.Offset
			}
			if committed != count {
				t.Fatalf("committed offsets add up to %d, not %d", committed, count)
			}
			entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
			if err != nil || len(entries) == 0 {
				t.Fatalf("describe configs: %v %v", entries, err)
			}
		})
	}
}
