//! The data model of the harness: what a caller (CLI, scenario runner,
//! benchmark) describes and what one exchange produces.
//!
//! Everything here is plain data. Input types (`PluginConfig`,
//! `DownstreamRequest`, `UpstreamResponse`, `ClusterSpec`, ...) implement
//! `Deserialize` so scenario files can write them; every type implements
//! `Serialize` so `harness run --json` can print an [`Outcome`].
//!
//! Bytes that may not be UTF-8 (header values, bodies, configuration) use
//! [`ByteString`]: it reads and writes as a plain string when the bytes are
//! UTF-8, otherwise as a list of byte values.

mod bytes;
mod config;
mod connection;
mod outcome;
mod properties;

pub use bytes::*;
pub use config::*;
pub use connection::*;
pub use outcome::*;
pub use properties::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_deserialize_from_every_form() {
        let map: Headers = serde_yaml_ng::from_str("{b: '2', a: x}").unwrap();
        assert_eq!(map, Headers::from_pairs([("b", "2"), ("a", "x")]));
        let pairs: Headers = serde_json::from_str(r#"[["x-a","1"],["x-a","2"]]"#).unwrap();
        assert_eq!(pairs.get_all("X-A").count(), 2);
        let lines: Headers = serde_json::from_str(r#"["host: a:80", ":path: /x"]"#).unwrap();
        assert_eq!(
            lines,
            Headers::from_pairs([("host", "a:80"), (":path", "/x")])
        );
        assert!(serde_json::from_str::<Headers>(r#"["nocolon"]"#).is_err());
    }

    #[test]
    fn byte_string_round_trips_non_utf8() {
        let b = ByteString(vec![0xff, 0x00, b'a']);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "[255,0,97]");
        assert_eq!(serde_json::from_str::<ByteString>(&json).unwrap(), b);
        assert_eq!(
            serde_json::to_string(&ByteString::from("hé")).unwrap(),
            "\"hé\""
        );
    }

    #[test]
    fn body_forms() {
        let one: Body = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(one.0.len(), 1);
        let many: Body = serde_json::from_str(r#"["a","bc"]"#).unwrap();
        assert_eq!(many.concat(), b"abc");
        let none: Body = serde_json::from_str("null").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn request_line_parses() {
        let r = DownstreamRequest::from_request_line("post /a?b=1").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/a?b=1"));
        assert_eq!(
            DownstreamRequest::from_request_line("/x").unwrap().method,
            "GET"
        );
        assert!(DownstreamRequest::from_request_line("GET x").is_err());
        assert!(DownstreamRequest::from_request_line("").is_err());
    }
}
