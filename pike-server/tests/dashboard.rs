//! `GET /v1/stats` and the dashboard's assets, against a real gateway and
//! its HTTP API on loopback (the browser test of the page itself is
//! `pike-server/dashboard-tests/`).

mod http_support;

use std::time::Duration;

use http_support::{DEMO_KEY, Harness, OTHER_KEY, PATIENCE, Reply, metrics_handle};
use pike_server::http::ServeConfig;
use pike_server::stats::MAX_SAMPLES;
use reqwest::header;
use serde_json::{Value, json};

/// Samples this far apart in these tests (the binary: 5 s): the history
/// covers 6 s, so a sample with the test's traffic stays in it while the
/// test polls.
const EVERY: Duration = Duration::from_millis(50);

async fn harness() -> Harness {
    harness_every(EVERY).await
}

async fn harness_every(every: Duration) -> Harness {
    // Installed before the gateway is built: it takes its delivery
    // counters from the recorder then.
    metrics_handle();
    Harness::start_custom(
        |builder| builder,
        |state| state.with_stats_sampling(every),
        ServeConfig::default(),
    )
    .await
}

/// Asks `GET /v1/stats` until `done` holds of the answer; panics after
/// [`PATIENCE`].
async fn stats_until(h: &Harness, key: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = h.get("/v1/stats", key).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if done(&reply.body) {
            return reply.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {what}; the last answer: {}",
            reply.body
        );
        tokio::time::sleep(EVERY).await;
    }
}

fn n(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is not a count"))
}

#[tokio::test]
async fn stats_need_a_key_and_count_each_apps_connections_by_transport() {
    let h = harness().await;
    h.get("/v1/stats", "pk_wrong_0123456789")
        .await
        .assert_error(401, "unauthorized");
    let missing = h.send(h.http.get(h.url("/v1/stats"))).await;
    missing.assert_error(401, "unauthorized");

    let _a = h.client("demo", "dev-a", "chat", "u1").await;
    let _b = h.client("demo", "dev-b", "chat", "u2").await;
    let _c = h.client("other", "dev-c", "chat", "u3").await;

    let stats = stats_until(&h, DEMO_KEY, "two tcp connections in a sample", |s| {
        s["samples"]
            .as_array()
            .and_then(|all| all.last())
            .is_some_and(|last| last["connections"]["tcp"] == 2)
    })
    .await;
    assert_eq!(stats["app"], "demo");
    assert_eq!(
        stats["connections"],
        json!({"mqtt": 0, "quic": 0, "tcp": 2, "tls": 0, "ws": 0}),
        "every transport listed"
    );
    let listed = h.get("/v1/connections", DEMO_KEY).await;
    assert_eq!(
        n(&listed.body["total"]),
        2,
        "the same count as /v1/connections"
    );
    assert_eq!(u128::from(n(&stats["interval_ms"])), EVERY.as_millis());
    assert_eq!(n(&stats["max_samples"]), MAX_SAMPLES as u64);
    assert_eq!(stats["metrics"], "gateway");

    let other = h.get("/v1/stats", OTHER_KEY).await;
    assert_eq!(other.body["app"], "other");
    assert_eq!(other.body["connections"]["tcp"], 1, "{:?}", other.body);
}

#[tokio::test]
async fn stats_report_the_gateways_rates_and_sla_over_each_interval() {
    let h = harness().await;
    let mut device = h.client("demo", "dev-rates", "chat", "rates").await;
    let before = h.get("/v1/stats", DEMO_KEY).await.body;
    let pushes_before = n(&before["totals"]["pushes"]);
    let acked_before = n(&before["totals"]["downlink_acked"]);

    for i in 0..3 {
        let (stored, online, _) = h
            .push(json!({"biz": "chat", "alias": "rates", "payload": format!("m{i}")}))
            .await
            .receipt();
        assert_eq!((stored, online), (1, 1));
        let delivery = device.next_delivery().await;
        assert_eq!(delivery.payload.as_ref(), format!("m{i}").as_bytes());
    }

    // The totals count the pushes and their acknowledgements (other tests
    // of this binary may add theirs: at least), and a sample's interval
    // shows them as rates and a downlink success ratio and latency.
    let with = |s: &Value, field: &str, test: &dyn Fn(&Value) -> bool| -> Option<Value> {
        s["samples"]
            .as_array()
            .and_then(|all| all.iter().find(|p| test(&p[field])).cloned())
    };
    let pushed = |v: &Value| v["pushes"].as_f64().is_some_and(|r| r > 0.0);
    let acked = |v: &Value| v["downlink_ack_p99_secs"].is_number();
    let stats = stats_until(&h, DEMO_KEY, "the pushes and acks in samples", |s| {
        n(&s["totals"]["downlink_acked"]) >= acked_before + 3
            && with(s, "rates", &pushed).is_some()
            && with(s, "sla", &acked).is_some()
    })
    .await;
    assert!(n(&stats["totals"]["pushes"]) >= pushes_before + 3);
    assert!(n(&stats["totals"]["messages_delivered"]) >= 3);
    let busy = with(&stats, "rates", &pushed).expect("a sample with pushes");
    assert!(busy["secs"].as_f64().is_some_and(|s| s > 0.0), "{busy}");
    let acks = with(&stats, "sla", &acked).expect("a sample with acks");
    let ratio = acks["sla"]["downlink_success_ratio"].as_f64();
    assert!(
        ratio.is_none_or(|r| r > 0.0 && r <= 1.0),
        "a ratio is at most 1: {acks}"
    );
    let p99 = acks["sla"]["downlink_ack_p99_secs"]
        .as_f64()
        .unwrap_or_default();
    assert!(p99 > 0.0 && p99 < PATIENCE.as_secs_f64(), "{acks}");
    assert!(n(&acks["sla"]["messages_delivered"]) >= 1, "{acks}");
    let samples = stats["samples"].as_array().expect("samples");
    let times: Vec<u64> = samples.iter().map(|p| n(&p["at_ms"])).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );
    // The SLA keys are the six indicators.
    let sla = acks["sla"].as_object().expect("sla");
    let mut keys: Vec<&str> = sla.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel_ready_p99_secs",
            "downlink_ack_p99_secs",
            "downlink_success_ratio",
            "messages_delivered",
            "uplink_ack_p99_secs",
            "uplink_success_ratio"
        ]
    );
}

#[tokio::test]
async fn the_history_keeps_at_most_max_samples() {
    let h = harness_every(Duration::from_millis(10)).await;
    let full = stats_until(&h, DEMO_KEY, "a full history", |s| {
        s["samples"]
            .as_array()
            .is_some_and(|a| a.len() == MAX_SAMPLES)
    })
    .await;
    let first = n(&full["samples"][0]["at_ms"]);
    // More samples later: still MAX_SAMPLES, the oldest gone.
    let later = stats_until(&h, DEMO_KEY, "the oldest sample dropped", |s| {
        n(&s["samples"][0]["at_ms"]) > first
    })
    .await;
    assert_eq!(later["samples"].as_array().map(Vec::len), Some(MAX_SAMPLES));
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn the_dashboards_files_are_served_with_strict_headers_and_no_key() {
    let h = harness().await;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PATIENCE)
        .build()
        .expect("client");
    let bare = no_redirects
        .get(h.url("/dashboard"))
        .send()
        .await
        .expect("GET /dashboard");
    assert_eq!(bare.status(), 308);
    assert_eq!(header_of(&bare, header::LOCATION), "/dashboard/");

    let page = no_redirects
        .get(h.url("/dashboard/"))
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), 200);
    assert_eq!(
        header_of(&page, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let csp = header_of(&page, header::CONTENT_SECURITY_POLICY);
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header_of(&page, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(header_of(&page, header::CACHE_CONTROL), "no-cache");
    assert_eq!(header_of(&page, header::X_FRAME_OPTIONS), "DENY");
    let etag = header_of(&page, header::ETAG).to_owned();
    let html = page.text().await.expect("html");
    assert!(html.contains("<script type=\"module\" src=\"app.js\"></script>"));

    let again = no_redirects
        .get(h.url("/dashboard/"))
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("revalidation");
    assert_eq!(again.status(), 304, "unchanged: not sent again");
    assert_eq!(header_of(&again, header::ETAG), etag);

    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("panels.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let response = no_redirects
            .get(h.url(&format!("/dashboard/{file}")))
            .send()
            .await
            .expect("a file");
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(header_of(&response, header::CONTENT_TYPE), kind, "{file}");
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        assert_ne!(header_of(&response, header::ETAG), etag, "{file}");
        assert!(!response.text().await.expect("body").is_empty(), "{file}");
    }

    let missing: Reply = h.send(h.http.get(h.url("/dashboard/secret.toml"))).await;
    missing.assert_error(404, "not_found");
    let traversal: Reply = h.send(h.http.get(h.url("/dashboard/..%2Fpike.toml"))).await;
    traversal.assert_error(404, "not_found");
}
