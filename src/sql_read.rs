//! Reading topics with SQL: stored record headers as JSON and payloads as text or JSON
//! when they are. Behind `kafka.headers()`, `kafka.encode_headers()`, `kafka.try_text()`,
//! `kafka.try_jsonb()` and the `kafka.topic_messages` view (sql/outbox.sql). Never an
//! ERROR for payload bytes that are not text or JSON: those read as NULL. And
//! `kafka.batch_records()`: a stored record batch as message rows (sql/batches.sql).

use pg_kafka_core::storage::batches::unpack;
use pg_kafka_core::storage::headers_json::{headers_from_json, headers_to_json};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;

#[pg_schema]
mod kafka {
    use super::*;

    /// Stored headers (`kafka.messages.headers`) as a JSON object.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    pub fn headers(encoded: &[u8]) -> JsonB {
        match headers_to_json(encoded) {
            Ok(json) => JsonB(json),
            Err(e) => {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("kafka.headers(): {e}"));
            }
        }
    }

    /// Headers as JSON (an object, or an array of [key, value] pairs) in the stored
    /// encoding; NULL for none.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    pub fn encode_headers(headers: JsonB) -> Option<Vec<u8>> {
        match headers_from_json(&headers.0) {
            Ok(encoded) => encoded.map(|b| b.to_vec()),
            Err(e) => {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("kafka.encode_headers(): {e}"));
            }
        }
    }

    /// The bytes as text when they are UTF-8 Postgres can hold (no NUL), else NULL.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    pub fn try_text(bytes: &[u8]) -> Option<String> {
        std::str::from_utf8(bytes).ok().filter(|text| !text.contains('\0')).map(str::to_owned)
    }

    /// The records of a stored batch (`kafka.batches.batch`) at their offsets, as the row
    /// layout would have stored them.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    #[allow(clippy::type_complexity)]
    pub fn batch_records(
        batch: &[u8],
    ) -> TableIterator<
        'static,
        (
            name!(offset, i64),
            name!(timestamp, TimestampWithTimeZone),
            name!(key, Option<Vec<u8>>),
            name!(value, Option<Vec<u8>>),
            name!(headers, Option<Vec<u8>>),
        ),
    > {
        let records = match unpack(batch) {
            Ok(records) => records,
            Err(e) => {
                ereport!(ERROR, PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, format!("kafka.batch_records(): {e}"));
            }
        };
        let rows: Vec<_> = records
            .into_iter()
            .map(|r| {
                let Some(timestamp) = crate::monitor::unix_ms_timestamp(r.timestamp_ms) else {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
                        format!("kafka.batch_records(): timestamp {} ms is outside Postgres's range", r.timestamp_ms)
                    );
                };
                let bytes = |b: Option<bytes::Bytes>| b.map(|b| b.to_vec());
                (r.offset, timestamp, bytes(r.key), bytes(r.value), bytes(r.headers))
            })
            .collect();
        TableIterator::new(rows)
    }

    /// The bytes as jsonb when they are a JSON document jsonb can hold, else NULL.
    #[pg_extern(immutable, strict, parallel_safe, sql = false)]
    pub fn try_jsonb(bytes: &[u8]) -> Option<JsonB> {
        let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        // jsonb refuses NUL characters in strings; such documents read as NULL.
        (!json.to_string().contains("\\u0000")).then_some(JsonB(json))
    }
}
