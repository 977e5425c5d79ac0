//! Local replies framed as Envoy's local-reply utility does
//! (source/common/http/utility.cc, `Utility::sendLocalReply`), seen by the
//! client, by the filter's own response path and by on_log.

use serde_json::json;

use crate::support::*;

fn replying(body: &str, grpc_status: i32, details: &str) -> harness::Harness {
    probe(json!({"http": {
        "request_headers": {"action": "pause", "steps": [
            {"op": "send_local_response", "status": 403, "details": details,
             "body": body, "grpc_status": grpc_status}]},
        "response_headers": {"steps": [
            {"op": "get_headers", "map": "response_headers", "label": "filter sees"}]},
        "log": [
            {"op": "get_property", "path": ["response", "code_details"], "label": "details"},
            {"op": "get_property", "path": ["response", "code"], "decode": "i64", "label": "code"}]
    }}))
}

#[test]
fn an_empty_reply_has_no_content_length_or_type() {
    let mut envoy = replying("", -1, "probe denied");
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    let response = outcome.response.as_ref().expect("reply");
    assert_eq!(response.status, 403);
    assert!(
        response
            .message
            .headers
            .get_text("content-length")
            .is_none()
    );
    assert!(response.message.headers.get_text("content-type").is_none());
    assert_eq!(
        result(&outcome, "filter sees"),
        r#"filter sees: OK pairs=[":status"="403"]"#
    );
    // Spaces in details become underscores; on_log sees the reply sent.
    assert_eq!(
        result(&outcome, "details"),
        r#"details: OK value="probe_denied""#
    );
    assert_eq!(result(&outcome, "code"), "code: OK value=403");
}

#[test]
fn a_head_request_gets_the_headers_without_the_body() {
    let mut envoy = replying("denied", -1, "d");
    let outcome = exchange(
        &mut envoy,
        request("HEAD /", &[("host", "h")]),
        ok_upstream(),
    );
    let response = outcome.response.as_ref().expect("reply");
    assert_eq!(
        response
            .message
            .headers
            .get_text("content-length")
            .as_deref(),
        Some("6")
    );
    assert!(response.message.body.0.is_empty(), "no body for HEAD");
}

#[test]
fn a_grpc_request_always_gets_the_grpc_form() {
    // No gRPC status given: Envoy maps 403 to 7 PERMISSION_DENIED.
    let mut envoy = replying("no access: 100%", -1, "d");
    let grpc = request(
        "POST /pkg.Service/Method",
        &[("host", "h"), ("content-type", "application/grpc")],
    );
    let outcome = exchange(&mut envoy, grpc, ok_upstream());
    let response = outcome.response.as_ref().expect("reply");
    let h = &response.message.headers;
    assert_eq!(response.status, 200);
    assert_eq!(
        h.get_text("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(h.get_text("grpc-status").as_deref(), Some("7"));
    assert_eq!(
        h.get_text("grpc-message").as_deref(),
        Some("no access: 100%25")
    );
    assert!(response.message.body.0.is_empty(), "trailers-only");
    assert!(h.get_text("content-length").is_none());
}
