package clienttests

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func franzClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	client, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(bootstrap(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

func createTopic(t *testing.T, admin *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := admin.CreateTopics(ctx, partitions, 1, configs, topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := created[topic].Err; err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
}

// consumeN reads n records of topic from the start with a direct (groupless) consumer.
func consumeN(t *testing.T, topic string, n int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	client := franzClient(t, append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var records []*kgo.Record
	for len(records) < n {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(records), n, topic)
		}
		fetches.EachError(func(topic string, partition int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, partition, err) })
		records = append(records, fetches.Records()...)
	}
	return records
}

// franz-go's producer is idempotent by default; every codec, headers and timestamps round trip byte for byte.
func TestFranzProducesEveryCodecIdempotentlyAndRoundTripsBytes(t *testing.T) {
	codecs := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := uniqueTopic("franz-" + name)
			admin := kadm.NewClient(franzClient(t))
			createTopic(t, admin, topic, 2, nil)
			producer := franzClient(t, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var sent []*kgo.Record
			for i := 0; i < 300; i++ {
				record := &kgo.Record{
					Key:       []byte(fmt.Sprintf("key-%d", i%11)),
					Value:     append([]byte{0, byte(i), 0xff}, bytes.Repeat([]byte("v"), i)...),
					Headers:   []kgo.RecordHeader{{Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte{0}}, {Key: "empty"}},
					Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
				}
				sent = append(sent, record)
			}
			if err := producer.ProduceSync(ctx, sent...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			got := consumeN(t, topic, len(sent))
			byValue := map[string]*kgo.Record{}
			for _, r := range got {
				byValue[string(r.Value)] = r
			}
			for _, want := range sent {
				r := byValue[string(want.Value)]
				if r == nil {
					t.Fatalf("record %q missing", want.Value)
				}
				if !bytes.Equal(r.Key, want.Key) || !r.Timestamp.Equal(want.Timestamp) || len(r.Headers) != 3 ||
					!bytes.Equal(r.Headers[1].Value, []byte{0}) || r.Headers[0].Key != "h" || len(r.Headers[2].Value) != 0 {
					t.Fatalf("record differs: sent %+v got %+v", want, r)
				}
			}
			if psql(t, fmt.Sprintf("SELECT count(*) FROM kafka.topic_messages WHERE topic = '%s'", topic)) != "300" {
				t.Fatal("not every record is stored exactly once")
			}
		})
	}
}

// Two members of a group share the partitions, commit, and a third client resumes from the commits.
func TestFranzConsumerGroupSharesPartitionsAndResumesFromCommits(t *testing.T) {
	topic := uniqueTopic("franz-group")
	group := topic + "-group"
	admin := kadm.NewClient(franzClient(t))
	createTopic(t, admin, topic, 4, nil)
	producer := franzClient(t, kgo.DefaultProduceTopic(topic))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var records []*kgo.Record
	for i := 0; i < 400; i++ {
		records = append(records, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for m := 0; m < 2; m++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			member := franzClient(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Balancers(kgo.CooperativeStickyBalancer()),
				kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, _ map[string][]int32) {
					_ = c.CommitUncommittedOffsets(ctx)
				}))
			for ctx.Err() == nil {
				mu.Lock()
				done := len(seen) >= 400
				mu.Unlock()
				if done {
					break
				}
				poll, pollCancel := context.WithTimeout(ctx, 500*time.Millisecond)
				fetches := member.PollFetches(poll)
				pollCancel()
				mu.Lock()
				for _, r := range fetches.Records() {
					seen[string(r.Value)]++
				}
				mu.Unlock()
				if err := member.CommitUncommittedOffsets(ctx); err != nil {
					t.Errorf("commit: %v", err)
				}
			}
			member.LeaveGroup()
		}()
		time.Sleep(time.Second)
	}
	wg.Wait()
	if len(seen) != 400 {
		t.Fatalf("the group read %d of 400 records", len(seen))
	}
	lags, err := admin.Lag(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	lags.Each(func(l kadm.DescribedGroupLag) {
		if total := l.Lag.Total(); total != 0 {
			t.Fatalf("lag after the group read everything: %d", total)
		}
	})
	offsets, err := admin.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 400 {
		t.Fatalf("committed offsets add up to %d, not 400", committed)
	}
}

// kadm: list offsets by time, delete records, describe and alter configs, describe the cluster and groups, ACLs.
func TestFranzAdmin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := uniqueTopic("franz-admin")
	admin := kadm.NewClient(franzClient(t))
	retention := "86400000"
	createTopic(t, admin, topic, 1, map[string]*string{"retention.ms": &retention})
	producer := franzClient(t, kgo.DefaultProduceTopic(topic))
	// An hour old: well inside retention.ms, so that no retention pass (every second in
	// the e2e cluster) deletes them while the test looks at the log start.
	base := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < 10; i++ {
		r := &kgo.Record{Value: []byte(fmt.Sprint(i)), Timestamp: time.UnixMilli(base + int64(i)*1000)}
		if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	byTime, err := admin.ListOffsetsAfterMilli(ctx, base+4_500, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := byTime.Lookup(topic, 0); o.Offset != 5 {
		t.Fatalf("offset after 4.5 s: %+v", o)
	}
	toDelete := kadm.Offsets{}
	toDelete.Add(kadm.Offset{Topic: topic, Partition: 0, At: 3})
	deleted, err := admin.DeleteRecords(ctx, toDelete)
	if err != nil || deleted.Error() != nil {
		t.Fatalf("delete records: %v %v", err, deleted.Error())
	}
	start, err := admin.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := start.Lookup(topic, 0); o.Offset != 3 {
		t.Fatalf("log start after deleting below 3: %+v", o)
	}
	configs, err := admin.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	config, err := configs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range config.Configs {
		if c.Key == "retention.ms" && c.MaybeValue() == retention {
			found = true
		}
	}
	if !found {
		t.Fatalf("retention.ms not described: %+v", config.Configs)
	}
	altered := "1000000"
	if _, err := admin.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: &altered}}, topic); err != nil {
		t.Fatal(err)
	}
	if psql(t, fmt.Sprintf("SELECT value FROM kafka.topic_configs c JOIN kafka.topics t ON t.id = c.topic_id WHERE t.name = '%s' AND c.name = 'retention.bytes'", topic)) != altered {
		t.Fatal("retention.bytes not stored")
	}
	meta, err := admin.BrokerMetadata(ctx)
	if err != nil || len(meta.Brokers) != 1 || meta.Controller != meta.Brokers[0].NodeID {
		t.Fatalf("one broker that is the controller: %+v %v", meta, err)
	}
	logDirs, err := admin.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	sized := false
	logDirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == topic && p.Size > 0 {
				sized = true
			}
		})
	})
	if !sized {
		t.Fatal("the topic's partition has no size in DescribeLogDirs")
	}
	names, err := admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sort.StringsAreSorted(names.Names()) || !names.Has(topic) {
		t.Fatalf("topic list: %v", names.Names())
	}
}
