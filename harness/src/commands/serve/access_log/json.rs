//! `json_format`: a JSON object per line. A value that is one operator
//! alone keeps its type (numbers unquoted, a missing value `null`), as
//! Envoy's JSON formatter writes it; a string mixing text and operators is
//! a string; other values are written as given.

use super::format::{Captured, Operator, Piece, parse};

#[derive(Clone, Debug)]
pub(crate) struct JsonField {
    pub key: String,
    pub value: JsonValue,
}

#[derive(Clone, Debug)]
pub(crate) enum JsonValue {
    Op(Operator),
    Text(Vec<Piece>),
    Literal(serde_json::Value),
    Object(Vec<JsonField>),
}

/// Parses a `json_format` struct; `Err` carries the key path inside it.
pub(crate) fn parse_object(
    object: &serde_json::Map<String, serde_json::Value>,
    captured: &mut Captured,
) -> Result<Vec<JsonField>, String> {
    let mut fields = Vec::new();
    for (key, value) in object {
        let value = match value {
            serde_json::Value::String(text) => {
                let pieces = parse(text, captured).map_err(|e| format!("{key}: {e}"))?;
                match pieces.as_slice() {
                    [Piece::Op(op)] => JsonValue::Op(op.clone()),
                    _ => JsonValue::Text(pieces),
                }
            }
            serde_json::Value::Object(inner) => {
                JsonValue::Object(parse_object(inner, captured).map_err(|e| format!("{key}.{e}"))?)
            }
            other => JsonValue::Literal(other.clone()),
        };
        fields.push(JsonField {
            key: key.clone(),
            value,
        });
    }
    Ok(fields)
}
