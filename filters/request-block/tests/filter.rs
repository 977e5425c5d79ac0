//! request-block in the simulated Envoy, from `cargo test`: the same
//! assertions on the .wasm and on the native twin.

use filter_test::{FilterUnderTest, Running};
use serde_json::json;

/// Each build started with the configuration of tests/request-block.yaml.
fn started() -> Vec<Running> {
    let config = json!({
        "paths": [{"exact": "/secret"}, {"prefix": "/admin/"}, {"regex": "\\.php$"}],
        "methods": ["TRACE"],
        "forbidden_headers": ["x-debug"],
        "status": 404,
        "body": "not here\n",
        "ignore_case": true,
        "rules": [{"match": {"hosts": ["*.internal.example.com"]},
                   "config": {"status": 401, "body": "internal only\n"}}],
    });
    FilterUnderTest::both(env!("CARGO_MANIFEST_DIR"))
        .iter()
        .map(|filter| filter.config(config.clone()).start())
        .collect()
}

#[test]
fn matching_paths_and_methods_get_the_configured_reply() {
    for mut envoy in started() {
        envoy
            .request("GET /secret")
            .send()
            .assert_local_reply(404)
            .assert_body("not here\n");
        envoy
            .request("GET /ADMIN/users?page=2")
            .send()
            .assert_local_reply(404);
        envoy
            .request("GET /wp-login.php")
            .send()
            .assert_local_reply(404);
        envoy
            .request("TRACE /anything")
            .send()
            .assert_local_reply(404);
    }
}

#[test]
fn a_forbidden_header_is_blocked_and_logged() {
    for mut envoy in started() {
        envoy
            .request("GET /public")
            .header("host", "example.com")
            .header("x-debug", "1")
            .send()
            .assert_local_reply(404)
            .assert_logs_contain("blocked GET /public");
    }
}

#[test]
fn other_requests_pass_untouched() {
    for mut envoy in started() {
        envoy
            .request("POST /admin")
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .assert_no_local_reply()
            .assert_status(200)
            .assert_upstream_header(":method", "POST")
            .assert_upstream_header("content-type", "text/plain");
    }
}

#[test]
fn a_host_rule_overrides_the_reply() {
    for mut envoy in started() {
        envoy
            .request("GET /secret")
            .header("host", "api.internal.example.com")
            .send()
            .assert_local_reply(401)
            .assert_body("internal only\n");
    }
}

#[test]
fn a_configuration_without_anything_to_block_is_rejected() {
    for filter in FilterUnderTest::both(env!("CARGO_MANIFEST_DIR")) {
        filter
            .config(json!({"status": 403}))
            .assert_rejected("nothing to block");
        filter
            .config(json!({"paths": [{"regex": "("}]}))
            .assert_rejected("invalid configuration at paths[0].regex");
    }
}
