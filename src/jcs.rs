//! RFC 8785 JSON Canonicalization Scheme (JCS) for the subset of JSON the transcript uses.
//!
//! The transcript never contains floating-point numbers, so this implementation accepts only
//! integers in the range where an IEEE 754 double is exact (|n| ≤ 2^53 − 1); anything else is
//! an error rather than a silently different serialization. Object members are sorted by the
//! UTF-16 code units of their names, as RFC 8785 §3.2.3 requires, and strings are escaped as
//! ECMAScript's `JSON.stringify` does (RFC 8785 §3.2.2.2).

use serde_json::Value;

/// Largest integer magnitude a JCS (IEEE 754 double) number can carry exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value cannot be canonicalized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JcsError {
    #[error(
        "number {0} is not an integer in ±(2^53 − 1); the transcript allows only such integers"
    )]
    UnsupportedNumber(String),
    /// A typed value could not be turned into JSON at all.
    #[error("cannot serialize the value as JSON: {0}")]
    Serialize(String),
}

/// Canonical serialization of any serializable value.
pub fn to_vec_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(value).map_err(|e| JcsError::Serialize(e.to_string()))?;
    to_vec(&value)
}

/// Canonical serialization of `value` as UTF-8 bytes.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Canonical serialization of `value` as a `String`.
pub fn to_string(value: &Value) -> Result<String, JcsError> {
    let bytes = to_vec(value)?;
    // Invariant: every byte written comes from `&str` input or ASCII literals, so the
    // output is valid UTF-8 by construction.
    String::from_utf8(bytes).map_err(|_| JcsError::UnsupportedNumber("<non-UTF-8>".into()))
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(JcsError::UnsupportedNumber(n.to_string()));
                }
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(JcsError::UnsupportedNumber(n.to_string()));
                }
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(JcsError::UnsupportedNumber(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs(v: Value) -> String {
        to_string(&v).unwrap()
    }

    #[test]
    fn sorts_keys_by_utf16_code_units() {
        // RFC 8785 §3.2.3 example: sorting by UTF-16 puts U+1F600 (surrogates D83D DE00)
        // before U+FB33 even though its UTF-8/code point order is the other way round.
        let v = json!({"\u{20ac}": "Euro", "\r": "CR", "\u{fb33}": "Hebrew", "1": "One",
                       "\u{1f600}": "Emoji", "\u{0080}": "Control", "\u{00f6}": "Latin"});
        assert_eq!(
            jcs(v),
            "{\"\\r\":\"CR\",\"1\":\"One\",\"\u{0080}\":\"Control\",\"\u{00f6}\":\"Latin\",\
             \"\u{20ac}\":\"Euro\",\"\u{1f600}\":\"Emoji\",\"\u{fb33}\":\"Hebrew\"}"
        );
    }

    #[test]
    fn escapes_like_json_stringify() {
        let v = json!("\u{0}\u{8}\u{9}\u{a}\u{c}\u{d}\u{1f}\"\\/\u{7f}\u{2028}é");
        assert_eq!(
            jcs(v),
            "\"\\u0000\\b\\t\\n\\f\\r\\u001f\\\"\\\\/\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn nested_structures_have_no_whitespace() {
        let v = json!({"b": [1, true, null, {"z": -5, "a": "x"}], "a": {}});
        assert_eq!(jcs(v), r#"{"a":{},"b":[1,true,null,{"a":"x","z":-5}]}"#);
    }

    #[test]
    fn rejects_floats_and_unsafe_integers() {
        assert_eq!(
            to_vec(&json!(1.5)),
            Err(JcsError::UnsupportedNumber("1.5".into()))
        );
        assert_eq!(
            to_vec(&json!(MAX_SAFE_INTEGER + 1)),
            Err(JcsError::UnsupportedNumber("9007199254740992".into()))
        );
        assert_eq!(jcs(json!(MAX_SAFE_INTEGER)), "9007199254740991");
        assert_eq!(jcs(json!(-9007199254740991i64)), "-9007199254740991");
    }
}
