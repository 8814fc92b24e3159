package clienttests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// segmentio/kafka-go: topic creation on the controller connection, a Writer with
// RequireAll acks and hash balancing, and a group Reader that commits what it read.
func TestKafkaGoWriterAndGroupReader(t *testing.T) {
	topic := uniqueTopic("kafkago")
	conn, err := kafkago.Dial("tcp", bootstrap(t))
	if err != nil {
		t.Fatal(err)
	}
	controller, err := conn.Controller()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	controllerConn, err := kafkago.Dial("tcp", net.JoinHostPort(controller.Host, strconv.Itoa(controller.Port)))
	if err != nil {
		t.Fatal(err)
	}
	if err := controllerConn.CreateTopics(kafkago.TopicConfig{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	controllerConn.Close()

	writer := &kafkago.Writer{Addr: kafkago.TCP(bootstrap(t)), Topic: topic, Balancer: &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const count = 100
	var messages []kafkago.Message
	for i := 0; i < count; i++ {
		messages = append(messages, kafkago.Message{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("value-%d", i)),
			Headers: []kafkago.Header{{Key: "n", Value: []byte(fmt.Sprint(i))}}})
	}
	if err := writer.WriteMessages(ctx, messages...); err != nil {
		t.Fatal(err)
	}
	writer.Close()

	reader := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{bootstrap(t)}, GroupID: topic + "-group", Topic: topic,
		StartOffset: kafkago.FirstOffset, MaxWait: 500 * time.Millisecond, HeartbeatInterval: time.Second,
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second})
	seen := map[string]bool{}
	for len(seen) < count {
		message, err := reader.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after %d messages: %v", len(seen), err)
		}
		if string(message.Headers[0].Value) != string(message.Key) {
			t.Fatalf("headers of %q: %+v", message.Key, message.Headers)
		}
		seen[string(message.Value)] = true
		if err := reader.CommitMessages(ctx, message); err != nil {
			t.Fatal(err)
		}
	}
	if err := reader.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	committed := psql(t, fmt.Sprintf("SELECT sum(committed_offset) FROM kafka.consumer_lag WHERE group_id = '%s-group'", topic))
	if committed != strconv.Itoa(count) {
		t.Fatalf("committed offsets add up to %s, not %d", committed, count)
	}
}
