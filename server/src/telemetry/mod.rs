//! Metrics and traces. Metric labels are route templates, names of
//! registered clusters (for callers the policy allowed), methods from a fixed
//! set and statuses: never raw caller input, never paths with user data, never
//! credentials. Label values are escaped as the exposition format requires
//! anyway, so no value could ever forge a line.

pub mod traces;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::header::CONTENT_TYPE;
use http::HeaderValue;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RequestLabels {
    pub route: RouteTemplate,
    pub cluster: Arc<str>,
    pub method: &'static str,
    /// For proxied requests, the Kubernetes verb the policy judged; else empty.
    pub verb: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteLabels {
    pub route: RouteTemplate,
    pub cluster: Arc<str>,
}

/// The route template a request matched, shared with the router (a label
/// costs no copy of it), or `unmatched`.
#[derive(Clone, Debug)]
pub struct RouteTemplate(Option<MatchedPath>);

impl RouteTemplate {
    pub fn new(matched: Option<MatchedPath>) -> Self {
        Self(matched)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteTemplate {}

impl std::hash::Hash for RouteTemplate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct UpstreamErrorLabels {
    pub cluster: String,
    /// `connect`, `timeout`, `tls`, `reset`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct FanOutErrorLabels {
    pub cluster: String,
    pub error_type: String,
}

/// A label value written with the escapes of the Prometheus and OpenMetrics
/// text formats (`\\`, `\"`, `\n`): prometheus-client writes values as they
/// are, so a quote or a line break in a value would end it early.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        let mut rest = self.0;
        while let Some(at) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..at])?;
            encoder.write_str(match rest.as_bytes()[at] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[at + 1..];
        }
        encoder.write_str(rest)
    }
}

/// Writes `labels` as a label set, every value escaped.
fn encode_escaped(
    labels: &[(&'static str, &str)],
    mut encoder: LabelSetEncoder,
) -> Result<(), std::fmt::Error> {
    for (name, value) in labels {
        prometheus_client::encoding::EncodeLabel::encode(
            &(*name, Escaped(value)),
            encoder.encode_label(),
        )?;
    }
    Ok(())
}

impl EncodeLabelSet for RequestLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let status = self.status.to_string();
        encode_escaped(
            &[
                ("route", self.route.as_str()),
                ("cluster", &self.cluster),
                ("method", self.method),
                ("verb", self.verb),
                ("status", &status),
            ],
            encoder,
        )
    }
}

impl EncodeLabelSet for RouteLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        encode_escaped(
            &[("route", self.route.as_str()), ("cluster", &self.cluster)],
            encoder,
        )
    }
}

impl EncodeLabelSet for UpstreamErrorLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        encode_escaped(&[("cluster", &self.cluster), ("kind", &self.kind)], encoder)
    }
}

impl EncodeLabelSet for FanOutErrorLabels {
    fn encode(&self, encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        encode_escaped(
            &[("cluster", &self.cluster), ("error_type", &self.error_type)],
            encoder,
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    /// `hit` or `miss`.
    pub result: &'static str,
}

/// Every metric kubeportal exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub open_streams: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub upgraded_connections: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub fan_out_errors: Family<FanOutErrorLabels, Counter>,
    pub audit_written: Counter<u64, AtomicU64>,
    pub audit_dropped: Counter<u64, AtomicU64>,
    pub cache: Family<CacheLabels, Counter>,
}

/// One cache's `hit` and `miss` series, held by a cache looked up on a hot
/// path so that a lookup counts without finding its series in the family.
#[derive(Clone)]
pub struct CacheSeries {
    hit: Counter,
    miss: Counter,
}

impl CacheSeries {
    pub fn count(&self, hit: bool) {
        if hit {
            self.hit.inc();
        } else {
            self.miss.inc();
        }
    }
}

pub type SharedMetrics = Arc<Metrics>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubeportal");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, cluster, method and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to response headers by route and cluster",
            latency.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream calls by cluster and kind (connect, tls, timeout, reset)",
            upstream_errors.clone(),
        );
        let open_streams = Gauge::default();
        registry.register(
            "open_streams",
            "Proxied response bodies currently streaming",
            open_streams.clone(),
        );
        let upgraded_connections = Gauge::default();
        registry.register(
            "upgraded_connections",
            "Upgraded (exec, attach, port-forward) connections currently open",
            upgraded_connections.clone(),
        );
        let fan_out_errors = Family::<FanOutErrorLabels, Counter>::default();
        registry.register(
            "fanout_cluster_errors",
            "Object-query errors by cluster and error type",
            fan_out_errors.clone(),
        );
        let audit_written = Counter::default();
        registry.register(
            "audit_records_written",
            "Audit records stored",
            audit_written.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the buffer was full or the store failed",
            audit_dropped.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cache lookups by cache and result",
            cache.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            upstream_errors,
            open_streams,
            upgraded_connections,
            fan_out_errors,
            audit_written,
            audit_dropped,
            cache,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        self.cache
            .get_or_create(&CacheLabels {
                cache,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }

    /// `cache`'s series, made now (at zero) and held by the caller.
    pub fn cache_series(&self, cache: &'static str) -> CacheSeries {
        let series = |result| {
            self.cache
                .get_or_create(&CacheLabels { cache, result })
                .clone()
        };
        CacheSeries {
            hit: series("hit"),
            miss: series("miss"),
        }
    }
}

/// The `method` label: one of the standard methods, else `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The `verb` label: a Kubernetes verb (or a non-resource request's method)
/// from a fixed set, `other` for anything else, empty when there is none.
pub fn verb_label(verb: Option<&str>) -> &'static str {
    verb.map_or("", |verb| {
        crate::kubernetes::common_verb(verb).unwrap_or("other")
    })
}

/// The name a cluster is registered under, for a name in any case; `None`
/// when no cluster is registered by that name.
pub type ClusterCheck = Arc<dyn Fn(Arc<str>) -> BoxFuture<'static, Option<Arc<str>>> + Send + Sync>;

/// What [`track`] needs: the metrics, and how to tell a registered cluster
/// name from anything else a caller may have sent.
#[derive(Clone)]
pub struct Tracking {
    pub metrics: SharedMetrics,
    pub registered: ClusterCheck,
}

/// Middleware: counts requests and times them to response headers.
///
/// The `cluster` label is the cluster the policy allowed the caller to use,
/// and only when it is registered, by the name it is registered under:
/// unauthenticated or denied callers, and names nobody registered, count
/// under an empty cluster, and a registered name in another case counts
/// under the registry's spelling, so no caller can add series by making up
/// names.
pub async fn track<F>(
    tracking: &Tracking,
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response
where
    F: std::future::Future<Output = Response>,
{
    let started = Instant::now();
    let method = method_label(request.method());
    let route = RouteTemplate::new(request.extensions().get::<MatchedPath>().cloned());
    let note = request
        .extensions()
        .get::<crate::context::AuditNote>()
        .cloned();
    let response = inner(request).await;
    let elapsed = started.elapsed();
    let verb = note.as_ref().map_or("", |note| note.verb_with(verb_label));
    let cluster = match note.and_then(|note| note.allowed_cluster()) {
        Some((name, true)) => name,
        Some((name, false)) => (tracking.registered)(name).await.unwrap_or_else(no_cluster),
        None => no_cluster(),
    };
    let labels = RouteLabels { route, cluster };
    let metrics = &tracking.metrics;
    metrics
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route: labels.route,
            cluster: labels.cluster,
            method,
            verb,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// The `cluster` label of a request that concerns no registered cluster.
fn no_cluster() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    EMPTY.clone()
}

/// `GET /metrics`.
pub async fn metrics_endpoint(State(metrics): State<SharedMetrics>) -> Response {
    let mut response = metrics.encode().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// Holds a gauge up while alive (a streaming body, an upgraded connection).
pub struct GaugeGuard(Gauge<i64, std::sync::atomic::AtomicI64>);

impl GaugeGuard {
    pub fn new(gauge: &Gauge<i64, std::sync::atomic::AtomicI64>) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lookups_count_in_their_series() {
        let metrics = Metrics::new();
        let clusters = metrics.cache_series("clusters");
        clusters.count(true);
        metrics.cache_lookup("clusters", true);
        clusters.count(false);
        metrics.cache_lookup("objects", false);
        let text = metrics.encode();
        for line in [
            "kubeportal_cache_lookups_total{cache=\"clusters\",result=\"hit\"} 2",
            "kubeportal_cache_lookups_total{cache=\"clusters\",result=\"miss\"} 1",
            "kubeportal_cache_lookups_total{cache=\"objects\",result=\"miss\"} 1",
        ] {
            assert!(
                text.lines().any(|written| written == line),
                "{line} in {text}"
            );
        }
        // Another cache's series appear once it is looked up, as before.
        assert!(!text.contains("cache=\"objects\",result=\"hit\""), "{text}");
    }

    #[test]
    fn verbs_come_from_a_fixed_set() {
        assert_eq!(verb_label(Some("watch")), "watch");
        assert_eq!(verb_label(Some("")), "other");
        assert_eq!(verb_label(Some("propfind")), "other");
        assert_eq!(verb_label(None), "");
    }

    #[test]
    fn label_values_cannot_forge_lines() {
        let metrics = Metrics::new();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                route: RouteTemplate::new(None),
                cluster: "a\"} 1\nkubeportal_forged_total 9\n\\".into(),
                method: "GET",
                verb: "",
                status: 200,
            })
            .inc();
        let text = metrics.encode();
        assert!(!text.contains("\nkubeportal_forged_total"), "{text}");
        assert!(
            text.contains(r#"cluster="a\"} 1\nkubeportal_forged_total 9\n\\""#),
            "{text}"
        );
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        let made_up = http::Method::from_bytes(b"RND1").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}
