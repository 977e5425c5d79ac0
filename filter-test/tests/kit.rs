//! The kit itself: what passes passes, and what fails says expected versus
//! actual in HTTP terms (never a Debug dump of the outcome).

use std::panic::{AssertUnwindSafe, catch_unwind};

use filter_test::FilterUnderTest;
use filter_test::harness::PropertyValue;
use serde_json::json;

fn filter_dir(name: &str) -> String {
    format!("{}/../filters/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn response_header() -> FilterUnderTest {
    FilterUnderTest::wasm(filter_dir("response-header"))
}

fn demo_config() -> serde_json::Value {
    json!({"name": "x-demo", "value": "on"})
}

/// The panic message of `f`, which must fail.
fn failure_of(f: impl FnOnce()) -> String {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => panic!("the assertion passed, but it should have failed"),
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    for debug_text in ["Outcome {", "Some(", "None", "ByteString", "Headers("] {
        assert!(
            !message.contains(debug_text),
            "the failure message shows Rust Debug text ({debug_text}):\n{message}"
        );
    }
    message
}

#[test]
fn a_wrong_status_shows_both_statuses_and_the_response() {
    let mut envoy = response_header().config(demo_config()).start();
    let message = failure_of(|| {
        envoy.request("GET /").send().assert_status(403);
    });
    assert!(
        message.starts_with("response-header (wasm): expected status 403\n  actual: status 200\n"),
        "{message}"
    );
    assert!(
        message.contains("  response headers:\n    :status: 200\n"),
        "{message}"
    );
    assert!(message.contains("    x-demo: on"), "{message}");
}

#[test]
fn a_wrong_or_missing_header_names_it() {
    let mut envoy = response_header().config(demo_config()).start();
    let reply = envoy.request("GET /").send();
    let wrong = failure_of(|| {
        reply.assert_header("x-demo", "off");
    });
    assert!(
        wrong.contains("expected response header `x-demo: off`\n  actual: x-demo: on"),
        "{wrong}"
    );
    let missing = failure_of(|| {
        reply.assert_header("x-other", "1");
    });
    assert!(missing.contains("actual: no `x-other` header"), "{missing}");
    let present = failure_of(|| {
        reply.assert_no_header("x-demo");
    });
    assert!(
        present.contains("expected no `x-demo` response header\n  actual: x-demo: on"),
        "{present}"
    );
}

#[test]
fn local_reply_and_upstream_assertions_say_where_the_request_went() {
    let mut envoy = response_header().config(demo_config()).start();
    let reply = envoy.request("GET /a").send();
    let message = failure_of(|| {
        reply.assert_local_reply(403);
    });
    assert!(
        message.contains(
            "expected a local reply with status 403\n  actual: no local reply (the request went upstream)"
        ),
        "{message}"
    );
    let upstream = failure_of(|| {
        reply.assert_upstream_header(":path", "/b");
    });
    assert!(
        upstream.contains("expected upstream request header `:path: /b`\n  actual: :path: /a"),
        "{upstream}"
    );
    assert!(upstream.contains("upstream request headers:"), "{upstream}");
}

#[test]
fn log_assertions_list_the_lines_there_were() {
    let mut envoy = response_header().config(demo_config()).start();
    let message = failure_of(|| {
        envoy
            .request("GET /")
            .send()
            .assert_logs_contain("no such words");
    });
    assert!(
        message.contains(
            "expected a log line containing `no such words`\n  actual: no such line\n  logs:"
        ),
        "{message}"
    );
}

#[test]
fn configuration_assertions_report_the_filters_own_words() {
    let filter = response_header();
    filter
        .config(json!({"name": ""}))
        .assert_rejected("must not be empty");
    let started = failure_of(|| filter.config(demo_config()).assert_rejected("anything"));
    assert!(
        started.contains("expected the configuration to be rejected, but the plugin started"),
        "{started}"
    );
    let other_words = failure_of(|| {
        filter
            .config(json!({"name": ""}))
            .assert_rejected("other words")
    });
    assert!(
        other_words.contains("no start-up log line contains `other words`")
            && other_words.contains("must not be empty"),
        "{other_words}"
    );
    let not_started = failure_of(|| {
        filter.config(json!({"name": ""})).start();
    });
    assert!(
        not_started.contains("response-header (wasm): the plugin did not start")
            && not_started.contains("must not be empty"),
        "{not_started}"
    );
}

#[test]
fn metrics_and_properties_reach_the_filter() {
    let config = json!({"prefix": "shop", "tags": [
        {"name": "request_method", "from": "method"},
        {"name": "route_name", "from": "route_name"},
    ]});
    let mut envoy = FilterUnderTest::wasm(filter_dir("request-metrics"))
        .config(config)
        .property("xds.route_name", PropertyValue::String("orders".into()))
        .start();
    envoy.request("GET /orders").send();
    let reply = envoy.request("GET /orders/7").send();
    let name = "request_method=.=GET;.;route_name=.=orders;.;shop_requests_total";
    reply.assert_metric(name, 2);
    let wrong = failure_of(|| {
        reply.assert_metric(name, 3);
    });
    assert!(
        wrong.contains(&format!(
            "expected metric `{name}` = 3\n  actual: {name} = 2"
        )),
        "{wrong}"
    );
    let missing = failure_of(|| {
        reply.assert_metric("nope", 1);
    });
    assert!(
        missing.contains("actual: no metric named `nope`"),
        "{missing}"
    );
    assert!(missing.contains(&format!("    {name} = 2")), "{missing}");
}

#[test]
fn a_native_twin_without_exported_host_functions_says_how_to_link() {
    // This test binary deliberately links without --export-dynamic.
    let message = failure_of(|| {
        FilterUnderTest::native(filter_dir("response-header"));
    });
    assert!(
        message.contains("does not export the harness's host functions")
            && message.contains("cargo:rustc-link-arg-tests=-Wl,--export-dynamic"),
        "{message}"
    );
}

#[test]
fn a_crate_that_is_not_a_filter_is_refused_with_the_fix() {
    let message = failure_of(|| {
        FilterUnderTest::wasm(format!("{}/../sdk-ext", env!("CARGO_MANIFEST_DIR")));
    });
    assert!(
        message.contains("sdk-ext has no cdylib library") && message.contains("crate-type"),
        "{message}"
    );
}
