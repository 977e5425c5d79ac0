use super::format::{Captured, DEFAULT_FORMAT, Format, Operator, Piece, parse};
use super::render::{Record, render};

fn record<'a>(request: &'a [Option<String>], response: &'a [Option<String>]) -> Record<'a> {
    Record {
        start: chrono::DateTime::from_timestamp_millis(1_704_067_200_007).unwrap_or_default(),
        duration_ms: 12,
        request,
        response,
        protocol: "HTTP/1.1",
        status: 200,
        flags: "-",
        details: Some("via_upstream"),
        bytes_received: 3,
        bytes_sent: 45,
        upstream_host: Some("127.0.0.1:8080"),
        upstream_cluster: Some("api"),
        route_name: None,
        hostname: "node-1",
    }
}

fn line(format: &Format, r: &Record) -> String {
    let mut out = String::new();
    render(format, r, &mut out);
    out
}

#[test]
fn the_default_format_writes_envoys_default_line() {
    let mut captured = Captured::default();
    let format = Format::Text(parse(DEFAULT_FORMAT, &mut captured).unwrap());
    assert_eq!(
        captured.names,
        [
            ":method",
            "x-envoy-original-path",
            ":path",
            "x-forwarded-for",
            "user-agent",
            "x-request-id",
            ":authority"
        ]
    );
    let request: Vec<Option<String>> = ["GET", "", "/a?b", "", "curl/8", "id-1", "svc"]
        .iter()
        .map(|v| (!v.is_empty()).then(|| v.to_string()))
        .collect();
    assert_eq!(captured.response_names, ["x-envoy-upstream-service-time"]);
    let response = [Some("7".to_string())];
    assert_eq!(
        line(&format, &record(&request, &response)),
        "[2024-01-01T00:00:00.007Z] \"GET /a?b HTTP/1.1\" 200 - 3 45 12 7 \"-\" \"curl/8\" \
         \"id-1\" \"svc\" \"127.0.0.1:8080\"\n"
    );
}

#[test]
fn operators_take_alternatives_truncation_and_patterns() {
    let mut captured = Captured::default();
    let pieces = parse(
        "%REQ(X-A?X-B):3% %RESP(X-MISSING)% %UPSTREAM_CLUSTER% %ROUTE_NAME% \
         %START_TIME(%s.%3f)% 100%% %RESPONSE_CODE_DETAILS% %HOSTNAME%",
        &mut captured,
    )
    .unwrap();
    assert_eq!(captured.names, ["x-a", "x-b"]);
    assert_eq!(captured.response_names, ["x-missing"]);
    let request = [None, Some("abcdef".to_string())];
    assert_eq!(
        line(&Format::Text(pieces), &record(&request, &[None])),
        "abc - api - 1704067200.007 100% via_upstream node-1"
    );
}

#[test]
fn a_bad_format_names_what_is_wrong() {
    let mut captured = Captured::default();
    for (text, expected) in [
        (
            "%DOWNSTREAM_PEER_URI_SAN%",
            "%DOWNSTREAM_PEER_URI_SAN% is not served",
        ),
        ("%REQ%", "%REQ% needs a header"),
        (
            "%REQ(A?B?C)%",
            "must be a header name, or two joined by '?'",
        ),
        ("%REQ(A):x%", "after ')' give :N"),
        ("50% off", "has no closing '%'"),
        ("%PROTOCOL(x)%", "takes no argument"),
    ] {
        let error = parse(text, &mut captured).unwrap_err();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[test]
fn json_values_keep_their_types() {
    let mut captured = Captured::default();
    let object = serde_json::json!({
        "code": "%RESPONSE_CODE%",
        "agent": "%REQ(USER-AGENT)%",
        "missing": "%REQ(X-NONE)%",
        "mixed": "at %BYTES_SENT% bytes",
        "fixed": 7,
        "up": {"host": "%UPSTREAM_HOST%"}
    });
    let serde_json::Value::Object(object) = object else {
        unreachable!()
    };
    let fields = super::json::parse_object(&object, &mut captured).unwrap();
    let request = [Some("curl/8".to_string()), None];
    let text = line(&Format::Json(fields), &record(&request, &[]));
    assert!(text.ends_with('\n'));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "code": 200, "agent": "curl/8", "missing": null,
            "mixed": "at 45 bytes", "fixed": 7, "up": {"host": "127.0.0.1:8080"}
        })
    );
    let bad = serde_json::json!({"a": {"b": "%NOPE%"}});
    let serde_json::Value::Object(bad) = bad else {
        unreachable!()
    };
    let error = super::json::parse_object(&bad, &mut captured).unwrap_err();
    assert!(error.starts_with("a.b: %NOPE% is not served"), "{error}");
}

#[test]
fn a_lone_operator_parses_to_one_piece() {
    let mut captured = Captured::default();
    assert_eq!(
        parse("%DURATION%", &mut captured).unwrap(),
        [Piece::Op(Operator::Duration)]
    );
}

#[test]
fn the_default_start_time_matches_chronos_pattern() {
    let t = chrono::DateTime::from_timestamp_millis(1_704_067_200_007).unwrap_or_default();
    assert_eq!(
        super::render::Rfc3339Millis(&t).to_string(),
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    );
}
