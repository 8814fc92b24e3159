//! Record headers as SQL shows them: JSON.
//!
//! `kafka.messages.headers` keeps Kafka's own encoding (a count, then key/value pairs) so
//! that Fetch can copy it back untouched. `kafka.headers(bytea)` shows it as a JSON object
//! (`{"key": "value"}`), and `kafka.produce()` takes the same object, or an array of
//! `[key, value]` pairs when order or repeated keys matter (a JSON object has neither).
//!
//! Values: a header value that is UTF-8 text is a JSON string, a null value is `null`, any
//! other bytes are a string `\x` + hex (Postgres's bytea form), which is turned back into
//! those bytes on the way in. Text with a NUL character takes the hex form too: `jsonb`
//! cannot hold U+0000, and a header a client may send must never make the SQL side fail.
//! Keys follow the same rule both ways. Other JSON values (numbers, objects, ...) are
//! stored as their JSON text.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::protocol::records::{decode_headers, encode_headers, Header};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadersJsonError {
    #[error("headers must be a JSON object or an array of [key, value] pairs")]
    Shape,
    #[error("a header key must be a JSON string")]
    Key,
    #[error("stored headers are not in Kafka's record header encoding")]
    Stored,
}

/// Stored headers as a JSON object (a later repeated key wins, as in `jsonb`).
pub fn headers_to_json(encoded: &[u8]) -> Result<Value, HeadersJsonError> {
    let headers = decode_headers(encoded).map_err(|_| HeadersJsonError::Stored)?;
    let mut object = Map::with_capacity(headers.len());
    for (key, value) in headers {
        object.insert(bytes_as_text(&key), value.map_or(Value::Null, |v| Value::String(bytes_as_text(&v))));
    }
    Ok(Value::Object(object))
}

/// Headers given as JSON, in Kafka's encoding; `None` for no headers.
pub fn headers_from_json(json: &Value) -> Result<Option<Bytes>, HeadersJsonError> {
    let headers: Vec<Header> = match json {
        Value::Null => Vec::new(),
        Value::Object(object) => object.iter().map(|(key, value)| (text_bytes(key), value_bytes(value))).collect(),
        Value::Array(pairs) => pairs.iter().map(pair).collect::<Result<_, _>>()?,
        _ => return Err(HeadersJsonError::Shape),
    };
    Ok(encode_headers(&headers))
}

fn pair(json: &Value) -> Result<Header, HeadersJsonError> {
    let Value::Array(pair) = json else { return Err(HeadersJsonError::Shape) };
    let [key, value] = pair.as_slice() else { return Err(HeadersJsonError::Shape) };
    let Value::String(key) = key else { return Err(HeadersJsonError::Key) };
    Ok((text_bytes(key), value_bytes(value)))
}

fn value_bytes(value: &Value) -> Option<Bytes> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text_bytes(text)),
        other => Some(Bytes::from(other.to_string())),
    }
}

/// A JSON string as bytes: `\x` + hex as those bytes, any other text as it is.
fn text_bytes(text: &str) -> Bytes {
    hex_bytes(text).unwrap_or_else(|| Bytes::copy_from_slice(text.as_bytes()))
}

/// UTF-8 bytes as they are (unless they could be read as hex, or hold a NUL, which `jsonb`
/// refuses), anything else as `\x` + hex.
fn bytes_as_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("\\x") && !text.contains('\0') => text.to_owned(),
        _ => format!("\\x{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// `\x` + an even number of hex digits, as bytes.
fn hex_bytes(text: &str) -> Option<Bytes> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect::<Option<Vec<u8>>>().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(json: Value) -> Value {
        headers_to_json(&headers_from_json(&json).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn objects_and_pairs_round_trip_with_binary_and_null_values() {
        let object = json!({"trace": "abc", "none": null, "bin": "\\x00ff", "n": 5});
        assert_eq!(round_trip(object), json!({"trace": "abc", "none": null, "bin": "\\x00ff", "n": "5"}));
        let pairs = json!([["k", "1"], ["k", "2"], ["e", ""]]);
        let encoded = headers_from_json(&pairs).unwrap().unwrap();
        let decoded = decode_headers(&encoded).unwrap();
        assert_eq!(decoded.len(), 3, "repeated keys kept, in order");
        assert_eq!(decoded[1], (Bytes::from_static(b"k"), Some(Bytes::from_static(b"2"))));
        assert_eq!(headers_to_json(&encoded).unwrap(), json!({"k": "2", "e": ""}));
    }

    #[test]
    fn no_headers_and_bad_shapes() {
        assert_eq!(headers_from_json(&Value::Null), Ok(None));
        assert_eq!(headers_from_json(&json!({})), Ok(None));
        assert_eq!(headers_from_json(&json!("x")), Err(HeadersJsonError::Shape));
        assert_eq!(headers_from_json(&json!([["k"]])), Err(HeadersJsonError::Shape));
        assert_eq!(headers_from_json(&json!([[1, "v"]])), Err(HeadersJsonError::Key));
        assert_eq!(headers_to_json(&[5]), Err(HeadersJsonError::Stored));
        // Text that merely starts like hex stays text both ways.
        assert_eq!(round_trip(json!({"a": "\\xZZ"})), json!({"a": "\\x5c785a5a"}));
    }

    /// What confluent-kafka sends for `headers=[('h', b'a\x00b')]`: jsonb cannot hold
    /// U+0000, so such keys and values read in the hex form, and go back byte-exact.
    #[test]
    fn text_with_nul_reads_as_hex_and_round_trips() {
        let stored = encode_headers(&[
            (Bytes::from_static(b"h"), Some(Bytes::from_static(b"a\x00b"))),
            (Bytes::from_static(b"k\x00"), Some(Bytes::from_static(b"v"))),
            (Bytes::from_static(b"\xff"), None),
        ])
        .unwrap();
        let json = headers_to_json(&stored).unwrap();
        assert_eq!(json, json!({"h": "\\x610062", "\\x6b00": "v", "\\xff": null}));
        assert!(!json.to_string().contains("\\u0000"), "{json}");
        let pairs = json!([["h", "\\x610062"], ["\\x6b00", "v"], ["\\xff", null]]);
        assert_eq!(headers_from_json(&pairs).unwrap().unwrap(), stored, "byte-exact both ways");
    }
}
