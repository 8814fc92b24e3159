//! SASL exchanges and ACL checks through the broker, on in-memory storage.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::in_order::InOrder;
use super::sasl::SaslExchange;
use super::session::{ListenerInfo, Session};
use super::testing::{broker_on, decode_response, request_frame};
use super::{Broker, Outcome};
use crate::config::Config;
use crate::security::acl::{AclBinding, Operation, PatternType, Permission, Principal, ResourceType};
use crate::security::listeners::SecurityProtocol;
use crate::security::scram::{client, Verifier};
use crate::storage::memory::MemoryStorage;
use crate::storage::{LoginRole, Storage};

fn role(name: &str, password: &str, can_login: bool, valid_until_ms: Option<i64>) -> LoginRole {
    let principal = Principal { name: name.into(), superuser: false, roles: BTreeSet::from([name.to_string(), "team".to_string()]) };
    let password = Some(Verifier::from_password(password, b"0123456789abcdef", 4096).to_text());
    LoginRole { password, can_login, valid_until_ms, principal }
}

/// A broker whose storage knows roles alice (member of team), nologin and expired, topic t.
fn broker_with_roles(acls: Vec<AclBinding>) -> Broker {
    let mut storage = MemoryStorage::default();
    storage.create_topic("t", 1).unwrap();
    storage.roles.insert("alice".into(), role("alice", "alice-pw", true, None));
    storage.roles.insert("nologin".into(), role("nologin", "pw", false, None));
    storage.roles.insert("expired".into(), role("expired", "pw", true, Some(1)));
    storage.acls = acls;
    broker_on(storage, Config::default())
}

fn sasl_session() -> Arc<Session> {
    let listener = ListenerInfo {
        protocol: SecurityProtocol::SaslPlaintext,
        advertised_host: None,
        advertised_port: 9093,
        mechanisms: vec!["SCRAM-SHA-256", "PLAIN"],
    };
    let peer: SocketAddr = ([10, 0, 0, 7], 40000).into();
    Arc::new(Session::new(Arc::new(listener), peer, ([10, 0, 0, 1], 9093).into()))
}

async fn handshake(
    broker: &Broker,
    exchange: &mut SaslExchange,
    session: &Session,
    mechanism: &'static str,
    version: i16,
) -> SaslHandshakeResponse {
    let body = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let outcome = broker.handle_sasl(exchange, request_frame(ApiKey::SaslHandshake, version, &body), session).await;
    decode_response(outcome, ApiKey::SaslHandshake, version)
}

async fn authenticate(broker: &Broker, exchange: &mut SaslExchange, session: &Session, token: &[u8]) -> (SaslAuthenticateResponse, bool) {
    let body = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    let outcome = broker.handle_sasl(exchange, request_frame(ApiKey::SaslAuthenticate, 2, &body), session).await;
    let closes = matches!(outcome, Outcome::RespondThenClose(..));
    (decode_response(outcome, ApiKey::SaslAuthenticate, 2), closes)
}

/// A whole SCRAM-SHA-256 exchange; the second answer, and whether it closes.
async fn scram_login(broker: &Broker, session: &Session, user: &str, password: &str) -> (SaslAuthenticateResponse, bool) {
    let mut exchange = SaslExchange::default();
    assert_eq!(handshake(broker, &mut exchange, session, "SCRAM-SHA-256", 1).await.error_code, 0);
    let first = client::first(user, "clientnonce");
    let (challenge, closes) = authenticate(broker, &mut exchange, session, first.as_bytes()).await;
    assert_eq!((challenge.error_code, closes), (0, false), "every role gets a challenge");
    let server_first = String::from_utf8(challenge.auth_bytes.to_vec()).unwrap();
    let (final_message, expected) = client::final_message(&first, &server_first, password);
    let (answer, closes) = authenticate(broker, &mut exchange, session, final_message.as_bytes()).await;
    if answer.error_code == 0 {
        assert_eq!(answer.auth_bytes, Bytes::from(expected), "the server proves it knows the verifier");
    }
    (answer, closes)
}

#[tokio::test]
async fn scram_logs_in_with_the_password_and_refuses_everything_else_alike() {
    let broker = broker_with_roles(vec![]);
    let session = sasl_session();
    let mut refusals = Vec::new();
    for (user, password) in [("alice", "wrong"), ("nologin", "pw"), ("expired", "pw"), ("nobody", "pw")] {
        let (answer, closes) = scram_login(&broker, &session, user, password).await;
        assert!(closes, "{user}");
        assert_eq!(answer.error_code, ResponseError::SaslAuthenticationFailed.code());
        refusals.push(answer.error_message);
        assert_eq!(session.login(), None);
    }
    assert!(refusals.windows(2).all(|w| w[0] == w[1]), "one message for every refusal: {refusals:?}");
    let (answer, closes) = scram_login(&broker, &session, "alice", "alice-pw").await;
    assert_eq!((answer.error_code, closes), (0, false));
    assert_eq!(session.login().as_deref(), Some("alice"));
}

#[tokio::test]
async fn plain_and_the_v0_raw_token_flow_log_in() {
    let broker = broker_with_roles(vec![]);
    let session = sasl_session();
    let mut exchange = SaslExchange::default();
    assert_eq!(handshake(&broker, &mut exchange, &session, "PLAIN", 0).await.error_code, 0);
    assert!(exchange.expects_raw_token(), "after a v0 handshake tokens come raw");
    let outcome = broker.handle_raw_sasl(&mut exchange, b"\0alice\0alice-pw", &session).await;
    let Outcome::Respond(frame) = outcome else { panic!("{outcome:?}") };
    assert_eq!(&frame[..], &[0, 0, 0, 0], "an empty raw answer, size-prefixed");
    assert_eq!(session.login().as_deref(), Some("alice"));
    let mut exchange = SaslExchange::default();
    handshake(&broker, &mut exchange, &session, "PLAIN", 0).await;
    let refused = broker.handle_raw_sasl(&mut exchange, b"\0alice\0nope", &session).await;
    assert!(matches!(refused, Outcome::Close(_)), "a v0 refusal closes");
}

#[tokio::test]
async fn handshakes_name_what_is_offered() {
    let broker = broker_with_roles(vec![]);
    let session = sasl_session();
    let mut exchange = SaslExchange::default();
    let answer = handshake(&broker, &mut exchange, &session, "GSSAPI", 1).await;
    assert_eq!(answer.error_code, ResponseError::UnsupportedSaslMechanism.code());
    assert_eq!(answer.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>(), ["SCRAM-SHA-256", "PLAIN"]);
    let mut exchange = SaslExchange::default();
    let plaintext = Session::loopback();
    assert_eq!(handshake(&broker, &mut exchange, &plaintext, "PLAIN", 1).await.error_code, ResponseError::IllegalSaslState.code());
    let (answer, closes) = authenticate(&broker, &mut SaslExchange::default(), &session, b"n,,n=alice,r=x").await;
    assert!(closes && answer.error_code == ResponseError::SaslAuthenticationFailed.code(), "authenticate before handshake");
}

fn acl(resource_type: ResourceType, name: &str, principal: &str, operation: Operation) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type: PatternType::Literal,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: Permission::Allow,
    }
}

async fn as_session<R: kafka_protocol::protocol::Decodable>(
    broker: &Broker,
    session: &Arc<Session>,
    key: ApiKey,
    version: i16,
    body: &impl kafka_protocol::protocol::Encodable,
) -> R {
    let outcome = broker.handle_in_order(request_frame(key, version, body), InOrder::first(), session.clone()).await;
    decode_response(outcome, key, version)
}

fn metadata_of(names: Option<&[&'static str]>) -> MetadataRequest {
    let topics = names.map(|names| {
        names.iter().map(|n| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(n))))).collect()
    });
    MetadataRequest::default().with_topics(topics).with_include_topic_authorized_operations(true)
}

#[tokio::test]
async fn acls_on_a_role_apply_to_its_members_and_hide_what_may_not_be_described() {
    let denied = broker_with_roles(vec![]);
    let session = sasl_session();
    session.authenticated("alice".into(), None);
    denied.acls().remember(role("alice", "", true, None).principal);
    let all: MetadataResponse = as_session(&denied, &session, ApiKey::Metadata, 12, &metadata_of(None)).await;
    assert!(all.topics.is_empty(), "no topic may be described");
    let named: MetadataResponse = as_session(&denied, &session, ApiKey::Metadata, 12, &metadata_of(Some(&["t"]))).await;
    assert_eq!(named.topics[0].error_code, ResponseError::TopicAuthorizationFailed.code());
    let join = JoinGroupRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g"))).with_session_timeout_ms(10_000);
    let joined: JoinGroupResponse = as_session(&denied, &session, ApiKey::JoinGroup, 5, &join).await;
    assert_eq!(joined.error_code, ResponseError::GroupAuthorizationFailed.code());

    // The same login, with READ on t granted to its group role "team".
    let allowed = broker_with_roles(vec![acl(ResourceType::Topic, "t", "User:team", Operation::Read)]);
    allowed.acls().remember(role("alice", "", true, None).principal);
    let all: MetadataResponse = as_session(&allowed, &session, ApiKey::Metadata, 12, &metadata_of(None)).await;
    assert_eq!(all.topics.len(), 1);
    let read_and_describe = (1 << Operation::Read as i32) | (1 << Operation::Describe as i32);
    assert_eq!(all.topics[0].topic_authorized_operations, read_and_describe);
    // Creating ACLs needs ALTER on the cluster.
    let creation = AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("t"))
        .with_resource_pattern_type(3)
        .with_principal(StrBytes::from_static_str("User:alice"))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(4)
        .with_permission_type(3);
    let created: CreateAclsResponse =
        as_session(&allowed, &session, ApiKey::CreateAcls, 3, &CreateAclsRequest::default().with_creations(vec![creation])).await;
    assert_eq!(created.results[0].error_code, ResponseError::ClusterAuthorizationFailed.code());
}

#[tokio::test]
async fn unauthenticated_listeners_allow_everything_and_report_every_operation() {
    let broker = broker_with_roles(vec![]);
    let all: MetadataResponse = as_session(&broker, &Session::loopback(), ApiKey::Metadata, 12, &metadata_of(None)).await;
    assert_eq!(all.topics.len(), 2, "the topic and __consumer_offsets");
    let every_topic_operation =
        crate::security::acl::operations_bits(crate::security::acl::operations_of(ResourceType::Topic).iter().copied());
    assert!(all.topics.iter().all(|t| t.topic_authorized_operations == every_topic_operation));
}

#[tokio::test]
async fn describe_cluster_and_groups_report_what_the_principal_may_do() {
    let broker = broker_with_roles(vec![
        acl(ResourceType::Cluster, "kafka-cluster", "User:team", Operation::Describe),
        acl(ResourceType::Group, "g", "User:alice", Operation::Read),
    ]);
    let session = sasl_session();
    session.authenticated("alice".into(), None);
    broker.acls().remember(role("alice", "", true, None).principal);
    let cluster: DescribeClusterResponse = as_session(
        &broker,
        &session,
        ApiKey::DescribeCluster,
        1,
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true).with_endpoint_type(1),
    )
    .await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.cluster_authorized_operations, 1 << Operation::Describe as i32);
    let groups = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_static_str("g")), GroupId(StrBytes::from_static_str("other"))])
        .with_include_authorized_operations(true);
    let described: DescribeGroupsResponse = as_session(&broker, &session, ApiKey::DescribeGroups, 5, &groups).await;
    let read_and_describe = (1 << Operation::Read as i32) | (1 << Operation::Describe as i32);
    assert_eq!((described.groups[0].error_code, described.groups[0].authorized_operations), (0, read_and_describe));
    assert_eq!(described.groups[1].error_code, ResponseError::GroupAuthorizationFailed.code());
}

/// A role may set its own verifier's iteration count: 10M (1.2-1.45 s of CPU per PLAIN
/// attempt if computed) is refused at once, as a wrong password is, over SCRAM and PLAIN.
#[tokio::test]
async fn verifiers_above_the_iteration_cap_are_refused_without_hashing() {
    let mut storage = MemoryStorage::default();
    storage.roles.insert("alice".into(), role("alice", "alice-pw", true, None));
    let mut greedy = role("greedy", "pw", true, None);
    let mut verifier = Verifier::parse(greedy.password.as_deref().unwrap()).unwrap();
    verifier.iterations = 10_000_000;
    greedy.password = Some(verifier.to_text());
    storage.roles.insert("greedy".into(), greedy);
    let broker = broker_on(storage, Config::default());
    let session = sasl_session();

    let (answer, closes) = scram_login(&broker, &session, "greedy", "pw").await;
    let (wrong, _) = scram_login(&broker, &session, "alice", "wrong").await;
    assert!(closes);
    assert_eq!(answer.error_code, ResponseError::SaslAuthenticationFailed.code());
    assert_eq!(answer.error_message, wrong.error_message, "refused as a wrong password is");
    let mut exchange = SaslExchange::default();
    handshake(&broker, &mut exchange, &session, "PLAIN", 1).await;
    // 10M iterations would take seconds even in a release build.
    let started = std::time::Instant::now();
    let (plain, closes) = authenticate(&broker, &mut exchange, &session, b"\0greedy\0pw").await;
    assert!(started.elapsed() < std::time::Duration::from_millis(1000), "hashed: {:?}", started.elapsed());
    assert!(closes);
    assert_eq!(plain.error_code, ResponseError::SaslAuthenticationFailed.code());
    assert_eq!(session.login(), None);
}
