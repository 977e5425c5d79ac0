//! A place in the bootstrap file: its value and its path
//! (`static_resources.listeners[0].address`), so every message says where.

use serde_yaml_ng::Value;

/// Warnings gathered while reading the file (unknown or ignored fields).
#[derive(Default)]
pub(crate) struct Notes {
    pub warnings: Vec<String>,
}

impl Notes {
    /// Records a warning once (a note about the runtime, say, is the same
    /// for every filter).
    pub fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }
}

#[derive(Clone)]
pub(crate) struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

pub(crate) type Parsed<T> = Result<T, String>;

/// How a value's type reads in messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Node<'a> {
        Node {
            value,
            path: String::new(),
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error at this place.
    pub fn error(&self, what: &str) -> String {
        let at = if self.path.is_empty() {
            "the top level"
        } else {
            &self.path
        };
        format!("{at}: {what}")
    }

    /// Checks this is a mapping; keys outside `known` and `ignored` are a
    /// warning, keys in `ignored` a note that serve does not simulate them.
    pub fn fields(&self, known: &[&str], ignored: &[&str], notes: &mut Notes) -> Parsed<()> {
        let Value::Mapping(map) = self.value else {
            return Err(self.error(&format!("must be a mapping, not {}", kind(self.value))));
        };
        for key in map.keys() {
            let Some(key) = key.as_str() else {
                return Err(self.error("has a key that is not a string"));
            };
            // A message's own type (checked where it is read).
            if key == "@type" || known.contains(&key) {
                continue;
            }
            let path = self.child(key);
            if ignored.contains(&key) {
                notes.warn(format!("{path}: not simulated by harness serve, ignored"));
            } else {
                notes.warn(format!("{path}: unknown field, ignored"));
            }
        }
        Ok(())
    }

    /// The field `key`, if present and not null.
    pub fn get(&self, key: &str) -> Option<Node<'a>> {
        let value = self.value.get(key)?;
        (!value.is_null()).then(|| Node {
            value,
            path: self.child(key),
        })
    }

    /// The field `key`, which must be there.
    pub fn need(&self, key: &str) -> Parsed<Node<'a>> {
        self.get(key)
            .ok_or_else(|| self.error(&format!("the field `{key}` is missing")))
    }

    pub fn str(&self) -> Parsed<&'a str> {
        self.value
            .as_str()
            .ok_or_else(|| self.error(&format!("must be a string, not {}", kind(self.value))))
    }

    /// A string field, `None` when absent.
    pub fn str_at(&self, key: &str) -> Parsed<Option<&'a str>> {
        self.get(key).map(|n| n.str()).transpose()
    }

    pub fn bool(&self) -> Parsed<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| self.error(&format!("must be true or false, not {}", kind(self.value))))
    }

    /// A number; protobuf's JSON form also allows it quoted.
    pub fn u64(&self) -> Parsed<u64> {
        let parsed = match self.value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| self.error("must be a whole number, zero or more"))
    }

    /// A list's items (an absent field is an empty list).
    pub fn list(&self) -> Parsed<Vec<Node<'a>>> {
        let Value::Sequence(items) = self.value else {
            return Err(self.error(&format!(
                "must be a list (one `- ` entry per item), not {}",
                kind(self.value)
            )));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", self.path),
            })
            .collect())
    }

    /// The list in field `key` (absent: empty).
    pub fn list_at(&self, key: &str) -> Parsed<Vec<Node<'a>>> {
        self.get(key).map_or(Ok(Vec::new()), |n| n.list())
    }

    /// A protobuf Duration: `"1.5s"` (its JSON form) or `{seconds, nanos}`.
    pub fn duration_ms(&self) -> Parsed<u64> {
        let bad = || self.error("must be a duration such as \"15s\" or \"0.25s\"");
        match self.value {
            Value::String(s) => {
                let seconds: f64 = s
                    .strip_suffix('s')
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if !(0.0..1e12).contains(&seconds) {
                    return Err(bad());
                }
                // Whole milliseconds, as serve's timers count.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok((seconds * 1000.0).round() as u64)
            }
            Value::Mapping(_) => {
                let part = |key| self.get(key).map_or(Ok(0), |n| n.u64());
                let (seconds, nanos) = (part("seconds")?, part("nanos")?);
                Ok(seconds
                    .saturating_mul(1000)
                    .saturating_add(nanos / 1_000_000))
            }
            _ => Err(bad()),
        }
    }
}
