//! Logs and traces: `tracing` for both, text or JSON logs, and OpenTelemetry
//! spans exported over OTLP/HTTP when `telemetry.otlpEndpoint` is set. W3C
//! `traceparent` is read from callers and written to clusters, so a trace
//! runs from the portal through kubeportal into the API server's audit log.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::filter::{filter_fn, FilterExt as _, FilterFn};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `logging:` in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info,kubeportal=debug`; `RUST_LOG` wins.
    pub level: Option<String>,
}

/// `telemetry:` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: default_service_name(),
        }
    }
}

fn default_service_name() -> String {
    "kubeportal".into()
}

/// kube-rs logs the raw body of a cluster response it cannot parse (at WARN,
/// and every body at TRACE): cluster data, Secrets included, must never reach
/// the logs, whatever `RUST_LOG` or `logging.level` say. Its errors carry no
/// body and stay visible.
pub fn quiet_kube_client() -> tracing_subscriber::filter::Directive {
    "kube_client::client=error"
        .parse()
        .expect("a valid filter directive")
}

/// Why logging and tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("telemetry.otlpEndpoint: {0}")]
    Exporter(opentelemetry_otlp::ExporterBuildError),
    #[error("{0}")]
    Subscriber(tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber (and the OTLP exporter when configured).
/// Keep the returned provider alive; dropping it flushes and stops export.
pub fn init(
    logging: &LoggingConfig,
    telemetry: &TelemetryConfig,
) -> Result<Option<SdkTracerProvider>, TracesError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match &telemetry.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(TracesError::Exporter)?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(telemetry.service_name.clone())
                            .build(),
                    )
                    .build(),
            )
        }
        None => None,
    };
    let result = subscriber(logging, provider.as_ref()).try_init();
    result.map_err(TracesError::Subscriber)?;
    Ok(provider)
}

/// The subscriber: logs on stderr and, with a tracer provider, spans for
/// export. Each has its own filter, so that a span no one wants (the
/// upstream call's, without an exporter) is never made at all.
fn subscriber(
    logging: &LoggingConfig,
    provider: Option<&SdkTracerProvider>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    let levels = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(logging.level.as_deref().unwrap_or("info")))
            .add_directive(quiet_kube_client())
    };
    let formatted: Box<dyn Layer<Registry> + Send + Sync> = match logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        // Colours only on a terminal: they are noise in a log file. Without
        // them, fields are written by `TextFields`, which skips the styling.
        LogFormat::Text if std::io::IsTerminal::is_terminal(&std::io::stderr()) => {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(TextFields)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    match provider {
        // The exporter sees spans the log does not (the upstream call's):
        // each layer has its own filter.
        Some(provider) => Box::new(
            tracing_subscriber::registry()
                .with(formatted.with_filter(levels().and(logged())))
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("kubeportal"))
                        .with_filter(levels()),
                ),
        ),
        // Without an exporter no layer at all (an absent layer would still
        // want every span), and the filters are the whole subscriber's: a
        // layer's own filter costs every span's entry, exit and field a
        // check of which layers enabled it.
        None => Box::new(
            tracing_subscriber::registry()
                .with(formatted)
                .with(levels())
                .with(logged()),
        ),
    }
}

/// Span and event fields as the default text format writes them without
/// colours (`name=value`, separated by spaces), each field in one write. The
/// default formatter writes a field's name, `=` and value each through its
/// styles even when they are empty, for every request's span. Messages,
/// errors and raw identifiers go to the default formatter as they are.
struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(
        &self,
        writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct TextVisitor<'writer> {
    writer: Writer<'writer>,
    is_empty: bool,
    result: std::fmt::Result,
}

impl TextVisitor<'_> {
    /// Writes a field as the default formatter does.
    fn as_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.as_default(|visitor| visitor.record_str(field, value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.as_default(|visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            // What the log bridge carries is already in the line.
            return;
        }
        if name == "message" || name.starts_with("r#") {
            self.as_default(|visitor| visitor.record_debug(field, value));
            return;
        }
        let space = if self.is_empty { "" } else { " " };
        self.is_empty = false;
        self.result = write!(self.writer, "{space}{name}={value:?}");
    }
}

/// What the log formatter sees: everything but the upstream call's span,
/// which only trace exporters need (an event during the call is logged
/// under its request's span, which names the cluster and path). A span the
/// formatter sees costs every request the formatting of its fields.
fn logged() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|metadata| !(metadata.is_span() && metadata.name() == "upstream"))
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace a caller's `traceparent` names, if any.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    // Without a caller trace the span is a root, as it already is.
    const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Makes each request's span: from its arrival until its response body is
/// finished or dropped, so that whatever is logged for the request, its
/// body's streaming included, names it.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpans {
    /// Whether spans are exported (`telemetry.otlpEndpoint`).
    pub exporting: bool,
}

impl RequestSpans {
    /// The span of `request`: its method and path (never the query, which
    /// may carry tickets), the cluster once it is known (`cluster`, recorded
    /// by the proxy), and the caller's trace when it sent a `traceparent`.
    pub fn span<B>(self, request: &http::Request<B>) -> tracing::Span {
        // The span kind is for the exporter alone: an empty field is not
        // written into every request's log span.
        let span = tracing::info_span!(
            "request",
            otel.kind = tracing::field::Empty,
            method = %request.method(),
            path = %request.uri().path(),
            cluster = tracing::field::Empty,
        );
        if self.exporting {
            span.record("otel.kind", "server");
        }
        continue_trace(&span, request.headers());
        span
    }
}

/// Whether the request log calls an answer a failure (a warning): 5xx,
/// kubeportal's own and a cluster's, but not a 501, which refuses the form
/// of a request (its transfer coding) before anyone is authenticated:
/// anyone could otherwise write warnings at will. kubeportal's own faults
/// (500) are also logged at ERROR where they happen, with their cause.
pub fn is_failure(status: http::StatusCode) -> bool {
    status.is_server_error() && status != http::StatusCode::NOT_IMPLEMENTED
}

/// Writes `span`'s trace context (`traceparent`) into outgoing headers.
pub fn propagate(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_failures_and_refused_forms_are_not() {
        for status in [500, 502, 503, 504] {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert!(is_failure(status), "{status}");
        }
        for status in [200, 400, 403, 404, 501] {
            let status = http::StatusCode::from_u16(status).unwrap();
            assert!(!is_failure(status), "{status}");
        }
    }

    /// Writes into a buffer the test reads.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Cause;

    impl std::fmt::Display for Cause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the cause")
        }
    }

    impl std::error::Error for Cause {}

    #[derive(Debug)]
    struct Failure(Cause);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("it failed")
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn emit() {
        let span = tracing::info_span!(
            "request",
            method = %http::Method::GET,
            path = %"/api/v1/pods",
            cluster = tracing::field::Empty,
            count = 3,
            r#type = "pod",
        );
        span.record("cluster", "dev \"quoted\"\n");
        let _entered = span.enter();
        let failure = Failure(Cause);
        tracing::warn!(
            status = 502,
            ok = false,
            ratio = 0.5,
            name = "a\u{1b}[31mred",
            error = &failure as &(dyn std::error::Error + 'static),
            "message with \u{1b}[2J an escape {}",
            7
        );
        tracing::info!("plain message");
        tracing::info!(only = ?vec![1, 2], "");
        let inner = tracing::info_span!("inner", r#loop = 1, "message in a span");
        inner.in_scope(|| tracing::error!(message = "a message field", detail = %"x y"));
    }

    /// Lines written through `TextFields` are the default formatter's
    /// without colours.
    #[test]
    fn text_fields_write_what_the_default_formatter_writes() {
        let written = |text_fields: bool| {
            let buffer = Buffer::default();
            let writer = buffer.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .without_time()
                .with_writer(move || writer.clone());
            if text_fields {
                tracing::subscriber::with_default(builder.fmt_fields(TextFields).finish(), emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), emit);
            }
            let bytes = buffer.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        let ours = written(true);
        assert!(ours.contains("cluster="), "{ours}");
        assert!(ours.contains("sources="), "{ours}");
        assert_eq!(ours, written(false));
    }

    #[test]
    fn without_an_exporter_no_upstream_span_is_made() {
        let subscriber = subscriber(&LoggingConfig::default(), None);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::info_span!("upstream", otel.kind = "client").is_disabled());
            assert!(!tracing::info_span!("request", otel.kind = "server").is_disabled());
        });
    }

    #[test]
    fn with_an_exporter_the_upstream_span_is_made() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(&LoggingConfig::default(), Some(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let upstream = tracing::info_span!("upstream", otel.kind = "client");
            assert!(!upstream.is_disabled());
            assert!(!tracing::info_span!("request", otel.kind = "server").is_disabled());
            // The exporting layer is reachable through the subscriber: the
            // span has a trace context to propagate.
            use opentelemetry::trace::TraceContextExt as _;
            assert!(upstream.context().span().span_context().is_valid());
        });
    }
}
