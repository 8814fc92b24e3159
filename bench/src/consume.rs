//! Consume throughput through pg_kafka with rdkafka, from offset 0.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{Env, Row};

/// A consumer of partitions 0..partitions of `topic`, from `from`, without a group.
pub fn consumer(env: &Env, topic: &str, partitions: i32, from: Offset, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &env.bootstrap)
        .set("group.id", "pg-kafka-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, from).unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Reads partition 0 of `topic` from offset 0, one message per `poll()`.
pub fn throughput(env: &Env, size: usize, topic: &str) -> Row {
    let (count, bytes, seconds) = read(env, topic, &[]);
    Row::new("consume", format!("Kafka fetch (rdkafka), {size} B"), count, bytes, seconds)
}

/// Reads `env.messages` messages of partition 0 of `topic` from offset 0 with consumer
/// `settings`: (messages, payload bytes, seconds).
pub fn read(env: &Env, topic: &str, settings: &[(&str, &str)]) -> (usize, usize, f64) {
    let consumer = consumer(env, topic, 1, Offset::Beginning, settings);
    let started = Instant::now();
    let (mut count, mut bytes) = (0, 0);
    while count < env.messages {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(message)) => {
                count += 1;
                bytes += message.payload_len();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no message for 10 s after {count}"),
        }
    }
    (count, bytes, started.elapsed().as_secs_f64())
}
