//! Traces: a span per request, a child span per upstream call, and the
//! caller's trace continued into the cluster through `traceparent`.

use kubeportal_tests::{
    config_for, double_cluster, register, spawn_with_config, start_double, ConfigSource, TestDb,
};
use opentelemetry::trace::{SpanId, SpanKind, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test]
async fn request_and_upstream_spans_share_the_callers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        // Every answer is logged at DEBUG by the server's module.
        .with(tracing_subscriber::EnvFilter::new(
            "info,kubeportal::app=debug",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();

    let db = TestDb::sqlite();
    // With an exporter configured, the request span is a server span.
    let mut config = config_for(&db, ConfigSource::NoFile);
    config.telemetry.otlp_endpoint = Some("http://127.0.0.1:9/v1/traces".into());
    let app = spawn_with_config(config).await;
    let double = start_double().await;
    register(&app, double_cluster("dev", &double)).await;

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces"))
        .header("Backstage-Kubernetes-Cluster", "dev")
        .header(
            "traceparent",
            format!("00-{caller_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();

    // The request span ends when the server drops the response body, which
    // can be just after the client has read its last byte.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans = loop {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let ended = |name: &str| spans.iter().any(|span| span.name == name);
        if (ended("request") && ended("upstream")) || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let request = spans
        .iter()
        .find(|span| span.name == "request")
        .expect("a request span");
    let upstream = spans
        .iter()
        .find(|span| span.name == "upstream")
        .expect("an upstream span");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert!(
        request.events.iter().any(|event| event.name == "response"
            && event.attributes.iter().any(|attribute| {
                attribute.key.as_str() == "status" && attribute.value.as_str() == "200"
            })),
        "the answer is logged at DEBUG in the request's span"
    );
    assert_eq!(upstream.span_kind, SpanKind::Client);
    let trace_id = TraceId::from_hex(caller_trace).unwrap();
    assert_eq!(
        request.span_context.trace_id(),
        trace_id,
        "the caller's trace is continued"
    );
    assert_eq!(
        request.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").unwrap()
    );
    assert_eq!(upstream.span_context.trace_id(), trace_id);
    assert_eq!(
        upstream.parent_span_id,
        request.span_context.span_id(),
        "upstream is a child of the request"
    );
    assert!(upstream
        .attributes
        .iter()
        .any(|attribute| attribute.key.as_str() == "cluster" && attribute.value.as_str() == "dev"));

    let recorded = double.requests().pop().unwrap();
    let traceparent = recorded
        .header("traceparent")
        .expect("traceparent reaches the cluster");
    assert_eq!(
        traceparent,
        format!("00-{caller_trace}-{}-01", upstream.span_context.span_id()),
        "the cluster sees the upstream span as parent"
    );

    // A cluster that cannot be reached: its answer (502) is logged as a
    // failure, inside the request's span, which names the request and the
    // cluster.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    register(
        &app,
        serde_json::json!({
            "name": "gone",
            "url": format!("http://{closed}"),
            "authProvider": "serviceAccount",
            "serviceAccountToken": "double-token",
        }),
    )
    .await;
    let response = app
        .client
        .get(app.url("/api/kubernetes/proxy/api/v1/namespaces?limit=1"))
        .header("Backstage-Kubernetes-Cluster", "gone")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    response.bytes().await.unwrap();
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|attribute| attribute.key.as_str() == key)
            .map(|attribute| attribute.value.as_str().into_owned())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let failed = loop {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let failed = spans.into_iter().find(|span| {
            span.name == "request" && attribute(span, "cluster").as_deref() == Some("gone")
        });
        if failed.is_some() || std::time::Instant::now() > deadline {
            break failed.expect("the failed request's span");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(attribute(&failed, "method").as_deref(), Some("GET"));
    assert_eq!(
        attribute(&failed, "path").as_deref(),
        Some("/api/kubernetes/proxy/api/v1/namespaces"),
        "the path, never the query"
    );
    let logged = failed
        .events
        .iter()
        .find(|event| event.name == "response failed")
        .expect("the failure is logged in the request's span");
    assert!(logged.attributes.iter().any(|attribute| {
        attribute.key.as_str() == "status" && attribute.value.as_str() == "502"
    }));
}
