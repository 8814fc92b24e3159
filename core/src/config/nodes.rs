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
//! one list every node has. `ID[:RACK]/NAME@...` gives the `application_name` the node's
//! standby connects to its primary with (Patroni: the member's name), which is how the
//! primary tells which nodes `pg_stat_replication` lists as synchronous (the in-sync
//! replicas); a node without a name is known by its id as its `application_name`.

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
    /// The `application_name` of the node's walreceiver, if the entry gives one.
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodesError {
    #[error("pg_kafka.cluster_nodes entry \"{0}\" is not ID[:RACK][/NAME]@HOST:PORT or ID[:RACK][/NAME]@PROTOCOL://HOST:PORT")]
    Syntax(String),
    #[error("pg_kafka.cluster_nodes gives node {0} twice for the same listener protocol")]
    Duplicate(i32),
    #[error("pg_kafka.cluster_nodes gives node {0} two racks")]
    TwoRacks(i32),
    #[error("pg_kafka.cluster_nodes gives node {0} two names, or its name to another node too")]
    TwoNames(i32),
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
        if node.name.is_some() && nodes.iter().any(|n| n.name.is_some() && (n.id == node.id) != (n.name == node.name)) {
            return Err(NodesError::TwoNames(node.id));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

fn parse_entry(entry: &str) -> Option<NodeAddress> {
    let (node, address) = entry.split_once('@')?;
    let (node, name) = match node.split_once('/') {
        Some((node, name)) => (node, Some(name.trim().to_owned()).filter(|n| !n.is_empty())),
        None => (node, None),
    };
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
    (!host.is_empty() && port != 0).then_some(NodeAddress { id, protocol, host, port, rack, name })
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

/// The node whose standby connects as `application_name`: the one of that name, else
/// the one whose id it is (a node without a name of its own).
pub fn id_named(nodes: &[NodeAddress], application_name: &str) -> Option<i32> {
    let named = nodes.iter().find(|n| n.name.as_deref() == Some(application_name)).map(|n| n.id);
    let by_id = || {
        let id = application_name.parse::<i32>().ok()?;
        let unnamed = nodes.iter().any(|n| n.id == id) && !nodes.iter().any(|n| n.id == id && n.name.is_some());
        unnamed.then_some(id)
    };
    named.or_else(by_id)
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
    fn a_standby_is_known_by_its_name_or_else_by_its_id() {
        let nodes = parse("1/pg1@h:1,2:r/node2@h:2,2@SSL://h:3,3@h:4").unwrap();
        assert_eq!(rack_of(&nodes, 2), Some("r"));
        let named: Vec<Option<i32>> = ["pg1", "node2", "3", "1", "2", "walreceiver", ""].iter().map(|n| id_named(&nodes, n)).collect();
        assert_eq!(named, [Some(1), Some(2), Some(3), None, None, None, None], "a named node is known by its name only");
        assert_eq!(parse("1/a@h:1,1/b@SSL://h:2"), Err(NodesError::TwoNames(1)));
        assert_eq!(parse("1/a@h:1,2/a@h:2"), Err(NodesError::TwoNames(2)));
        assert!(parse("1/a@h:1,1/a@SSL://h:2,1@SASL_SSL://h:3").is_ok(), "the same name again, or none");
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
