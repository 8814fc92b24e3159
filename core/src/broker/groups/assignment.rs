//! A consumer group member's assignment as operators read it: `topic:0,1,2;other:3`, and
//! whether its subscription names a topic (OffsetDelete).
//!
//! The bytes are whatever the group's leader (a client) sent in SyncGroup, for protocol
//! type "consumer" in Kafka's ConsumerProtocolAssignment (version, then topics with their
//! partitions, then user data). They are walked here with every length checked against
//! the bytes present, never handed to a decoder that would pre-allocate from them.

/// The assignment as text, or `None` when the bytes are not a consumer assignment.
pub fn describe(mut bytes: &[u8]) -> Option<String> {
    let _version = take_i16(&mut bytes)?;
    let topics = take_count(&mut bytes, 6)?;
    let mut described = Vec::with_capacity(topics);
    for _ in 0..topics {
        let name_len = usize::try_from(take_i16(&mut bytes)?).ok()?;
        let name = std::str::from_utf8(take(&mut bytes, name_len)?).ok()?.to_owned();
        let partitions = take_count(&mut bytes, 4)?;
        let list: Option<Vec<String>> = (0..partitions).map(|_| take_i32(&mut bytes).map(|p| p.to_string())).collect();
        described.push(format!("{name}:{}", list?.join(",")));
    }
    Some(described.join(";"))
}

/// Whether a member's ConsumerProtocolSubscription (version, then topic names) names
/// `topic`; `false` when the bytes are not a consumer subscription.
pub fn subscribes_to(mut bytes: &[u8], topic: &str) -> bool {
    let names = take_i16(&mut bytes).and_then(|_| take_count(&mut bytes, 2));
    let mut next_name = || {
        let length = usize::try_from(take_i16(&mut bytes)?).ok()?;
        take(&mut bytes, length)
    };
    (0..names.unwrap_or(0)).map_while(|_| next_name()).any(|name| name == topic.as_bytes())
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    (bytes.len() >= n).then(|| {
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        head
    })
}

fn take_i16(bytes: &mut &[u8]) -> Option<i16> {
    take(bytes, 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
}

fn take_i32(bytes: &mut &[u8]) -> Option<i32> {
    take(bytes, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An array length no larger than the bytes left could hold at `min_item` bytes each.
fn take_count(bytes: &mut &[u8], min_item: usize) -> Option<usize> {
    let count = usize::try_from(take_i32(bytes)?).ok()?;
    (count <= bytes.len() / min_item).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn reads_what_kafka_clients_send() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default().with_topic(TopicName("orders".into())).with_partitions(vec![0, 2]),
            TopicPartition::default().with_topic(TopicName("audit".into())).with_partitions(vec![1]),
        ]);
        let mut bytes = bytes::BytesMut::new();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        assignment.encode(&mut bytes, 1).unwrap();
        assert_eq!(describe(&bytes).as_deref(), Some("orders:0,2;audit:1"));
    }

    #[test]
    fn refuses_lengths_the_bytes_cannot_hold() {
        assert_eq!(describe(&[]), None);
        assert_eq!(describe(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None, "2 billion topics in no bytes");
        assert_eq!(describe(&[0, 0, 0, 0, 0, 1, 0, 5, b'a']), None, "a name longer than the bytes");
        assert_eq!(describe(&[0, 0, 0, 0, 0, 0]).as_deref(), Some(""));
    }

    #[test]
    fn subscriptions_are_read_without_trusting_their_lengths() {
        let mut metadata = vec![0, 3, 0, 0, 0, 2, 0, 1, b'a', 0, 1, b't'];
        assert!(subscribes_to(&metadata, "t"));
        assert!(!subscribes_to(&metadata, "x"));
        metadata[5] = 0x7f; // claims more names than present
        assert!(!subscribes_to(&metadata, "x"));
        assert!(!subscribes_to(&[0, 3, 0x7f, 0xff, 0xff, 0xff], "t"));
    }
}
