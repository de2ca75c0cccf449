//! The `opentelemetry` feature: the trace context of a span is its OpenTelemetry context
//! (from a `tracing-opentelemetry` layer), and [`init_otlp`] installs such a layer with an
//! OTLP exporter in one call.

use std::sync::Arc;

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
    TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use super::{SpanId, TraceContext, TraceId};

/// The OpenTelemetry context of `span`, when a `tracing-opentelemetry` layer gave it one.
pub(super) fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    if !span_context.is_valid() {
        return None;
    }
    let state = span_context.trace_state().header();
    Some(TraceContext {
        trace_id: TraceId(u128::from_be_bytes(span_context.trace_id().to_bytes())),
        span_id: SpanId(u64::from_be_bytes(span_context.span_id().to_bytes())),
        flags: span_context.trace_flags().to_u8(),
        tracestate: (!state.is_empty()).then(|| Arc::from(state)),
    })
}

/// Makes the remote context `remote` the OpenTelemetry parent of `span` (not yet entered).
pub(super) fn set_parent(span: &tracing::Span, remote: &TraceContext) {
    let state = remote
        .tracestate
        .as_deref()
        .and_then(|state| state.parse::<TraceState>().ok())
        .unwrap_or_default();
    let parent = SpanContext::new(
        OtelTraceId::from_bytes(remote.trace_id.0.to_be_bytes()),
        OtelSpanId::from_bytes(remote.span_id.0.to_be_bytes()),
        TraceFlags::new(remote.flags),
        true,
        state,
    );
    // An error means no OpenTelemetry layer records the span: there is nothing to join,
    // and the span keeps Aegis's own context.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// Why [`init_otlp`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// The OTLP exporter cannot be built (an endpoint that is not a URL, say).
    #[error("cannot build the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// A global tracing subscriber was installed already.
    #[error("cannot install the tracing subscriber")]
    Subscriber(#[source] tracing::subscriber::SetGlobalDefaultError),
}

/// Keeps the OTLP pipeline [`init_otlp`] installed; dropping it flushes the spans not yet
/// exported and shuts the exporter down.
#[derive(Debug)]
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtlpGuard {
    provider: SdkTracerProvider,
}

impl OtlpGuard {
    /// The tracer provider, to add tracers or flush by hand.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(%err, "the OTLP exporter did not shut down cleanly");
        }
    }
}

/// Installs, as the global tracing subscriber, a `fmt` layer (filtered by `RUST_LOG`,
/// `info` by default) and an OpenTelemetry layer whose spans go in batches to the OTLP/HTTP
/// (protobuf) collector at `endpoint` (`http://localhost:4318`; `/v1/traces` is added when
/// the path is missing), under the resource `service.name = service_name`.
///
/// Keep the guard for as long as the process runs: dropping it flushes and shuts down.
///
/// ```no_run
/// # fn run() -> Result<(), aegis_runtime::telemetry::OtlpError> {
/// let _guard = aegis_runtime::telemetry::init_otlp("billing", "http://localhost:4318")?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`OtlpError`]: the exporter cannot be built, or a global subscriber is installed already.
pub fn init_otlp(service_name: &str, endpoint: &str) -> Result<OtlpGuard, OtlpError> {
    let endpoint = endpoint.trim_end_matches('/');
    let endpoint = if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(OtlpError::Exporter)?;
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("aegis");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer())
        .with(tracing_opentelemetry::layer().with_tracer(tracer));
    tracing::subscriber::set_global_default(subscriber).map_err(OtlpError::Subscriber)?;
    Ok(OtlpGuard { provider })
}
