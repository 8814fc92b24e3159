//! The shadowed set and the progress record, in the database pg_kafka serves. Read and
//! written by the supervising thread only, over one connection made again after an error:
//! Postgres being away stops neither forwarding (its cursor lives on the external cluster)
//! nor the set's forwarders (they keep what they were started with).

use postgres::{Client, NoTls};

use crate::metrics::Progress;

/// Which way a shadow row forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// pg_kafka's topic to the external cluster (`kafka.shadow_topic()`).
    Export,
    /// The external cluster's topic into pg_kafka (`kafka.mirror_topic()`).
    Import,
}

/// One row of `kafka.shadow_topics`: what a forwarder is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowSpec {
    pub topic_id: i32,
    pub direction: Direction,
    /// The topic's name in pg_kafka.
    pub topic: String,
    pub external_topic: String,
    pub bootstrap_servers: String,
    /// librdkafka settings for the external cluster, each a string (checked by
    /// `kafka.shadow_topic()`; a row written otherwise is refused here).
    pub properties: Vec<(String, String)>,
    pub transactional_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}", describe(.0))]
    Postgres(#[from] postgres::Error),
    #[error("kafka.shadow_topics row of topic {topic}: properties: {reason}")]
    Properties { topic: String, reason: String },
    #[error("kafka.shadow_topics row of topic {topic}: unknown direction {direction}")]
    Direction { topic: String, direction: String },
}

const SHADOWED: &str =
    "SELECT s.topic_id, t.name, s.external_topic, s.bootstrap_servers, s.properties::text, s.transactional_id, s.direction \
     FROM kafka.shadow_topics s JOIN kafka.topics t ON t.id OPERATOR(pg_catalog.=) s.topic_id ORDER BY s.topic_id";

// Rows of a topic unshadowed meanwhile are skipped (their parent row is gone); the offset
// only moves forward, whatever order records arrive in.
const RECORD_PROGRESS: &str = "INSERT INTO kafka.shadow_progress AS p (topic_id, partition, next_offset, source_high_watermark, updated_at) \
     SELECT u.t, u.p, u.o, u.h, pg_catalog.now() \
     FROM ROWS FROM (pg_catalog.unnest($1::int4[]), pg_catalog.unnest($2::int4[]), pg_catalog.unnest($3::int8[]), pg_catalog.unnest($4::int8[])) AS u(t, p, o, h) \
     WHERE EXISTS (SELECT FROM kafka.shadow_topics s WHERE s.topic_id OPERATOR(pg_catalog.=) u.t) \
     ON CONFLICT (topic_id, partition) DO UPDATE \
     SET next_offset = pg_catalog.int8larger(p.next_offset, excluded.next_offset), \
         source_high_watermark = excluded.source_high_watermark, updated_at = excluded.updated_at";

pub struct Catalog {
    conninfo: String,
    client: Option<Client>,
}

impl Catalog {
    pub fn new(conninfo: &str) -> Catalog {
        Catalog { conninfo: conninfo.to_owned(), client: None }
    }

    /// The shadowed topics now.
    pub fn shadowed(&mut self) -> Result<Vec<ShadowSpec>, CatalogError> {
        let rows = self.with_client(|client| client.query(SHADOWED, &[]))?;
        rows.iter()
            .map(|row| {
                let topic: String = row.get(1);
                let direction = match row.get::<_, &str>(6) {
                    "export" => Direction::Export,
                    "import" => Direction::Import,
                    other => return Err(CatalogError::Direction { topic, direction: other.to_owned() }),
                };
                let properties =
                    parse_properties(row.get(4)).map_err(|reason| CatalogError::Properties { topic: topic.clone(), reason })?;
                Ok(ShadowSpec {
                    topic_id: row.get(0),
                    direction,
                    topic,
                    external_topic: row.get(2),
                    bootstrap_servers: row.get(3),
                    properties,
                    transactional_id: row.get(5),
                })
            })
            .collect()
    }

    /// Records where forwarders are (after their external commits).
    pub fn record_progress(&mut self, progress: &[Progress]) -> Result<(), CatalogError> {
        if progress.is_empty() {
            return Ok(());
        }
        let topics: Vec<i32> = progress.iter().map(|p| p.topic_id).collect();
        let partitions: Vec<i32> = progress.iter().map(|p| p.partition).collect();
        let offsets: Vec<i64> = progress.iter().map(|p| p.next_offset).collect();
        let highs: Vec<Option<i64>> = progress.iter().map(|p| p.source_high_watermark).collect();
        self.with_client(|client| client.execute(RECORD_PROGRESS, &[&topics, &partitions, &offsets, &highs]))?;
        Ok(())
    }

    /// Runs `work` on the connection, connecting first if needed; drops it after an error
    /// so that the next call connects again.
    fn with_client<T>(&mut self, work: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T, postgres::Error> {
        if self.client.is_none() {
            let mut client = Client::connect(&self.conninfo, NoTls)?;
            client.batch_execute("SET application_name = 'pg_kafka_shadow'; SET search_path = pg_catalog, pg_temp")?;
            self.client = Some(client);
        }
        let result = work(self.client.as_mut().expect("connected above"));
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

/// The server's message and SQLSTATE where there is one ("db error" alone says nothing).
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// A JSON object of strings, as librdkafka settings.
fn parse_properties(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    object
        .iter()
        .map(|(name, setting)| match setting.as_str() {
            Some(text) => Ok((name.clone(), text.to_owned())),
            None => Err(format!("{name} is not a string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_properties;

    #[test]
    fn properties_are_an_object_of_strings() {
        assert_eq!(
            parse_properties(r#"{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}"#).unwrap(),
            vec![("sasl.mechanism".to_owned(), "PLAIN".to_owned()), ("security.protocol".to_owned(), "SASL_SSL".to_owned())]
        );
        assert!(parse_properties(r#"{"linger.ms": 5}"#).is_err());
        assert!(parse_properties("[]").is_err());
    }
}
