//! response-header in the simulated Envoy, from `cargo test`: the same
//! assertions on the .wasm and on the native twin.

use filter_test::FilterUnderTest;
use filter_test::harness::UpstreamResponse;
use serde_json::json;

fn builds() -> [FilterUnderTest; 2] {
    FilterUnderTest::both(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn both_builds_run_the_wasm_first_then_the_native_twin() {
    assert_eq!(builds().map(|filter| filter.backend()), ["wasm", "native"]);
}

#[test]
fn the_configured_header_is_added_to_the_response_only() {
    for filter in builds() {
        let mut envoy = filter
            .config(json!({"name": "resp-header-demo", "value": "added by our filter"}))
            .start();
        envoy
            .request("GET /details/123")
            .header("host", "details:9080")
            .upstream_header("content-type", "application/json")
            .send()
            .assert_no_local_reply()
            .assert_status(200)
            .assert_header("resp-header-demo", "added by our filter")
            .assert_header("content-type", "application/json")
            .assert_upstream_header(":path", "/details/123");
    }
}

#[test]
fn the_list_form_adds_every_header_with_names_lower_cased() {
    for filter in builds() {
        let config = json!({"headers": [
            {"name": "resp-header-demo", "value": "added by our filter"},
            {"name": "X-Mesh", "value": "asm"},
            {"name": "x-empty"},
        ]});
        let mut envoy = filter.config(config).start();
        let reply = envoy.request("GET /details/1").send();
        reply
            .assert_header("x-mesh", "asm")
            .assert_header("x-empty", "")
            .assert_no_header("X-Mesh-Missing");
        assert_eq!(
            reply.header("resp-header-demo").as_deref(),
            Some("added by our filter")
        );
    }
}

#[test]
fn the_routers_own_503_still_gets_the_header() {
    for filter in builds() {
        let mut envoy = filter
            .config(json!({"name": "x-demo", "value": "on"}))
            .start();
        let unreachable = UpstreamResponse {
            unreachable: true,
            ..UpstreamResponse::default()
        };
        envoy
            .request("GET /")
            .upstream(unreachable)
            .send()
            .assert_status(503)
            .assert_header("x-demo", "on");
    }
}

#[test]
fn bad_configurations_are_rejected_with_the_field_named() {
    for filter in builds() {
        filter
            .config(json!({"name": "", "value": "x"}))
            .assert_rejected("invalid configuration at name: must not be empty");
        filter
            .config(json!({"name": "a", "value": "b", "headers": [{"name": "c", "value": "d"}]}))
            .assert_rejected("not both");
        filter
            .config(json!("name=hello"))
            .assert_rejected("invalid configuration");
    }
}
