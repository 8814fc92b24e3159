//! `pg_kafka.cluster_nodes`: every node of a replicated pg_kafka (a Postgres primary and
//! its hot standbys) as clients reach it, so that each node's Metadata names them all and
//! the primary as every partition's leader (docs/replication.md).
//!
//! The same list is set on every node: comma-separated `ID@HOST:PORT` (the node's address
//! for clients of every listener) or `ID@PROTOCOL://HOST:PORT` (for clients of that
//! listener protocol; a node may have one entry per protocol). A node's own entry is only
//! a default: it advertises its own listeners' addresses. `ID:RACK@...` also gives the
//! node's rack (Kafka's `broker.rack`), which follower fetching (KIP-392) matches with a
//! consumer's `client.rack`: the leader must know every node's rack, so racks are in the
//! one list every node has.

use crate::security::listeners::{parse_address, SecurityProtocol};

/// One entry of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub id: i32,
    /// `None`: the address for clients of every listener protocol without an entry of
    /// their own.
    pub protocol: Option<SecurityProtocol>,
    pub host: String,
    pub port: u16,
    /// The node's rack, if the entry gives one.
    pub rack: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodesError {
    #[error("pg_kafka.cluster_nodes entry \"{0}\" is not ID[:RACK]@HOST:PORT or ID[:RACK]@PROTOCOL://HOST:PORT")]
    Syntax(String),
    #[error("pg_kafka.cluster_nodes gives node {0} twice for the same listener protocol")]
    Duplicate(i32),
    #[error("pg_kafka.cluster_nodes gives node {0} two racks")]
    TwoRacks(i32),
}

/// Parses the list; an empty one is a node alone.
pub fn parse(list: &str) -> Result<Vec<NodeAddress>, NodesError> {
    let mut nodes: Vec<NodeAddress> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let node = parse_entry(entry).ok_or_else(|| NodesError::Syntax(entry.to_owned()))?;
        if nodes.iter().any(|n| n.id == node.id && n.protocol == node.protocol) {
            return Err(NodesError::Duplicate(node.id));
        }
        if nodes.iter().any(|n| n.id == node.id && n.rack.is_some() && node.rack.is_some() && n.rack != node.rack) {
            return Err(NodesError::TwoRacks(node.id));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_entry(entry: &str) -> Option<NodeAddress> {
    let (node, address) = entry.split_once('@')?;
    let (id, rack) = match node.split_once(':') {
        Some((id, rack)) => (id, Some(rack.trim().to_owned()).filter(|r| !r.is_empty())),
        None => (node, None),
    };
    let id: i32 = id.trim().parse().ok().filter(|id| *id >= 0)?;
    let (protocol, host, port) = if address.contains("://") {
        let (protocol, host, port) = parse_address(address).ok()?;
        (Some(protocol), host, port)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        (None, host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().ok()?)
    };
    (!host.is_empty() && port != 0).then_some(NodeAddress { id, protocol, host, port, rack })
}

/// Where clients of a `protocol` listener reach node `id`: its entry for that protocol,
/// else its entry for every protocol; `None` if the list has neither.
pub fn address_of(nodes: &[NodeAddress], id: i32, protocol: SecurityProtocol) -> Option<(&str, u16)> {
    let exact = nodes.iter().find(|n| n.id == id && n.protocol == Some(protocol));
    let any = || nodes.iter().find(|n| n.id == id && n.protocol.is_none());
    exact.or_else(any).map(|n| (n.host.as_str(), n.port))
}

/// Node `id`'s rack, from whichever of its entries gives one.
pub fn rack_of(nodes: &[NodeAddress], id: i32) -> Option<&str> {
    nodes.iter().find(|n| n.id == id && n.rack.is_some()).and_then(|n| n.rack.as_deref())
}

/// The node ids of the list and `this` one, ascending, each once.
pub fn ids(nodes: &[NodeAddress], this: i32) -> Vec<i32> {
    let mut ids: Vec<i32> = nodes.iter().map(|n| n.id).chain([this]).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_a_node_for_every_protocol_or_for_one() {
        let nodes = parse(" 1@10.0.0.1:9092, 2@PLAINTEXT://10.0.0.2:9092,2@SASL_SSL://[::1]:9093 ,").unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(address_of(&nodes, 1, SecurityProtocol::SaslSsl), Some(("10.0.0.1", 9092)), "no entry of its own: the general one");
        assert_eq!(address_of(&nodes, 2, SecurityProtocol::SaslSsl), Some(("::1", 9093)));
        assert_eq!(address_of(&nodes, 2, SecurityProtocol::Plaintext), Some(("10.0.0.2", 9092)));
        assert_eq!(address_of(&nodes, 2, SecurityProtocol::Ssl), None, "node 2 has no SSL address");
        assert_eq!(ids(&nodes, 3), vec![1, 2, 3]);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn a_node_may_name_its_rack_once() {
        let nodes = parse("1:us-east-1a@10.0.0.1:9092,2:us-east-1b@PLAINTEXT://10.0.0.2:9092,2@SSL://10.0.0.2:9093,3@h:1").unwrap();
        assert_eq!((rack_of(&nodes, 1), rack_of(&nodes, 2), rack_of(&nodes, 3)), (Some("us-east-1a"), Some("us-east-1b"), None));
        assert_eq!(address_of(&nodes, 2, SecurityProtocol::Ssl), Some(("10.0.0.2", 9093)));
        assert_eq!(parse("1:a@h:1,1:b@SSL://h:2"), Err(NodesError::TwoRacks(1)));
        assert!(matches!(parse("x:a@h:1"), Err(NodesError::Syntax(_))));
    }

    #[test]
    fn malformed_and_repeated_entries_are_refused() {
        for bad in ["1", "x@h:1", "-1@h:1", "1@h", "1@h:0", "1@:9092", "1@FTP://h:1", "1@h:99999"] {
            assert!(matches!(parse(bad), Err(NodesError::Syntax(_))), "{bad}");
        }
        assert_eq!(parse("1@a:1,1@b:2"), Err(NodesError::Duplicate(1)));
        assert!(parse("1@a:1,1@SSL://b:2").is_ok(), "one general entry and one per protocol");
    }
}
