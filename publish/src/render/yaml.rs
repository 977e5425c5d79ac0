//! A small block-style YAML writer whose strings read back as strings under
//! YAML 1.1 too. kubectl and Istio read manifests with go-yaml v2 (YAML 1.1),
//! where plain `on`, `yes`, `n`, `1_000` or `1:20` are booleans and numbers;
//! YAML 1.2 writers (serde_yaml_ng included) leave them unquoted, which turns a
//! label value `"on"` into a boolean that `kubectl apply` refuses. Here a string
//! is written plain only when it cannot be anything else in either version.

use serde_yaml_ng::Value;

/// Serialises `value` (through serde_yaml_ng's ordered `Value`) as one YAML document.
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, serde_yaml_ng::Error> {
    let value = serde_yaml_ng::to_value(value)?;
    let mut out = String::new();
    match untag(&value) {
        Value::Mapping(map) if !map.is_empty() => write_mapping(map, 0, false, &mut out),
        Value::Sequence(seq) if !seq.is_empty() => write_sequence(seq, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Tags never occur in rendered resources; write what they wrap.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn pad(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// `first_inline`: the first entry goes on the current line (after a "- ").
fn write_mapping(
    map: &serde_yaml_ng::Mapping,
    indent: usize,
    first_inline: bool,
    out: &mut String,
) {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(indent, out);
        }
        out.push_str(&scalar(key));
        out.push(':');
        match untag(value) {
            Value::Mapping(m) if !m.is_empty() => {
                out.push('\n');
                write_mapping(m, indent + 2, false, out);
            }
            // Sequences under a key start at the key's own indentation, as kubectl prints them.
            Value::Sequence(s) if !s.is_empty() => {
                out.push('\n');
                write_sequence(s, indent, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn write_sequence(seq: &[Value], indent: usize, out: &mut String) {
    for item in seq {
        pad(indent, out);
        out.push('-');
        match untag(item) {
            Value::Mapping(m) if !m.is_empty() => {
                out.push(' ');
                write_mapping(m, indent + 2, true, out);
            }
            Value::Sequence(s) if !s.is_empty() => {
                out.push('\n');
                write_sequence(s, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Mapping(_) => "{}".into(),
        Value::Sequence(_) => "[]".into(),
        Value::Tagged(t) => scalar(untag(&t.value)),
    }
}

/// Words YAML 1.1 or 1.2 read as booleans or null, in any letter case.
const SPECIAL_WORDS: [&str; 11] = [
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "nan", "inf",
];

/// True when `s` may be written without quotes and still read back as this
/// string under both YAML 1.1 and 1.2.
pub fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Starting with a letter or '/' rules out every number, timestamp and indicator.
    if !(first.is_ascii_alphabetic() || first == '/') {
        return false;
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '.' | '/' | ':' | '@' | '+' | '-')
    };
    if !s.chars().all(allowed) {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') || s.contains(": ") || s.contains("  ") {
        return false;
    }
    !SPECIAL_WORDS.iter().any(|w| s.eq_ignore_ascii_case(w))
}

fn quote(s: &str) -> String {
    if is_plain_safe(s) {
        return s.to_string();
    }
    let printable = s
        .chars()
        .all(|c| !c.is_control() && c != '\u{feff}' && c != '\u{2028}' && c != '\u{2029}');
    if printable {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        // A JSON string is a valid YAML double-quoted scalar.
        serde_json::to_string(s).unwrap_or_else(|_| format!("'{}'", s.replace('\'', "''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_booleans_and_numbers_are_quoted() {
        for s in [
            "on",
            "ON",
            "Off",
            "yes",
            "Y",
            "n",
            "NO",
            "true",
            "False",
            "null",
            "~",
            "1_000",
            "1:20",
            "0755",
            "0x1F",
            "1e3",
            ".5",
            "-1",
            "+1",
            ".inf",
            "2001-12-14",
            "",
            " x",
            "x ",
            "a: b",
            "#x",
            "-x",
            "@type",
            "*x",
            "&x",
            "!x",
            "%x",
            "[x]",
            "{x}",
            "x#y",
        ] {
            assert!(!is_plain_safe(s), "{s:?} must be quoted");
        }
        for s in [
            "details",
            "v1",
            "oci://host:5000/repo/f:v0.1",
            "app.kubernetes.io/part-of",
            "hello details",
            "envoy.filters.http.router",
            "/var/local/lib/wasm-filters/x.wasm",
        ] {
            assert!(is_plain_safe(s), "{s:?} may stay plain");
        }
    }

    #[test]
    fn output_reads_back_as_the_same_value() {
        let value = json!({
            "z": "on",
            "a": {"list": [{"k": "v", "n": 1}, "yes", 0.5, true, null, [], {}], "empty": ""},
            "quote": "it's",
            "multi": "line\nbreak\ttab",
            "@type": "type.googleapis.com/x",
            "nested": [[1, 2], ["a"]],
        });
        let text = to_string(&value).unwrap();
        let back: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
        assert!(text.contains("z: 'on'\n"), "{text}");
        assert!(text.contains("- 'yes'\n"), "{text}");
        assert!(text.contains("multi: \"line\\nbreak\\ttab\"\n"), "{text}");
    }

    #[test]
    fn fields_keep_their_declaration_order() {
        #[derive(serde::Serialize)]
        struct S {
            b: u8,
            a: u8,
        }
        assert_eq!(to_string(&S { b: 1, a: 2 }).unwrap(), "b: 1\na: 2\n");
    }
}
