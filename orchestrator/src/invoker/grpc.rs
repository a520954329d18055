//! The gRPC invoker: calls `grpc://<participant>/<package.Service>/<Method>` tasks, typed at
//! run time through the participant's server reflection (DESIGN §2, §3).
//!
//! One call goes:
//! 1. [`parse_resource`] splits the resource; the alias picks the configured endpoint
//!    (`Sagaflow.UnknownParticipant` otherwise).
//! 2. The participant's [`DescriptorPool`] comes from reflection, fetched on first use and
//!    cached; a service or method it lacks triggers one refetch (the participant may have been
//!    upgraded) before `Sagaflow.UnknownMethod`.
//! 3. The input becomes the request message by the proto3 JSON mapping, unknown fields refused
//!    (`Sagaflow.InvalidRequest` naming the field).
//! 4. A unary call on the participant's one, lazily connected, shared HTTP/2 channel, with
//!    `idempotency-key`, `saga-compensates` (compensations) and `sagaflow-attempt` metadata,
//!    the attempt's W3C `traceparent`/`tracestate` when the engine traces it
//!    ([`crate::telemetry::call`]), and the attempt's deadline both as `grpc-timeout` and as a
//!    local timer (`States.Timeout`).
//! 5. The answer becomes JSON with default-valued fields included; a failure is named by
//!    [`error`]'s table, which also says whether the request may have been applied.
//!
//! Nothing here panics: every failure is an [`InvokeError`], and [`Invoker::invoke`] turns it
//! into [`CallOutcome::Failed`] with a cause that says what to do.
//!
//! `https://` endpoints use [`GrpcInvokerOptions::tls`]: the CA that signed the participants'
//! certificates and, for participants that require one, this orchestrator's client
//! certificate (mutual TLS). Not handled here: `HeartbeatSeconds` (a unary call has no
//! heartbeat; the deadline bounds it).

pub mod codec;
pub mod error;
pub mod json;
pub mod reflection;
pub mod resource;

use std::{
    collections::BTreeMap,
    sync::{OnceLock, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use sagaflow_language::interpreter::Call;
use serde_json::Value;
use thiserror::Error;
use tonic::{
    Code, Request, Status,
    client::Grpc,
    codegen::http::uri::PathAndQuery,
    metadata::{AsciiMetadataValue, MetadataMap},
    transport::{Channel, Endpoint},
};

pub use self::{
    codec::DynamicCodec,
    error::{InvokeError, Target, grpc_error_name},
    json::{
        JsonOptions, RequestError, UnknownField, request_from_json, response_to_json, unknown_fields,
        unknown_parameter_fields,
    },
    resource::{GrpcResource, ResourceError, parse_resource},
};
use super::{CallOutcome, Invoker};

/// Metadata key of the call's idempotency key (DESIGN §3).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Metadata key, on compensations, of the forward call's idempotency key.
pub const SAGA_COMPENSATES: &str = "saga-compensates";
/// Metadata key of the attempt number (1 for the first), for the participant's logs.
pub const SAGAFLOW_ATTEMPT: &str = "sagaflow-attempt";

/// The largest deadline sent: ASL's own maximum `TimeoutSeconds` (99,999,999), which also
/// keeps `grpc-timeout` within its 8 digits.
const MAX_TIMEOUT: Duration = Duration::from_secs(99_999_999);

/// Tuning of [`GrpcInvoker`].
#[derive(Debug, Clone)]
pub struct GrpcInvokerOptions {
    /// How long establishing a connection may take; past it the call fails as unreachable.
    pub connect_timeout: Duration,
    /// How long fetching a participant's schema by reflection may take.
    pub reflection_timeout: Duration,
    /// The deadline of a call whose `timeout_seconds` is 0 (DESIGN §3's default).
    pub default_timeout: Duration,
    /// HTTP/2 keep-alive pings on idle connections, so a dead peer is noticed before a call
    /// waits for it; `None` turns them off.
    pub keep_alive_interval: Option<Duration>,
    /// The largest response accepted, encoded; a larger one fails the attempt with
    /// `States.DataLimitExceeded` (outcome unknown: the participant did apply it).
    pub max_response_bytes: usize,
    /// How responses are rendered.
    pub json: JsonOptions,
    /// TLS for `https://` participants (CA, optional client identity); `None`: only
    /// `http://` participants can be reached.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// Values at these paths of a call's input are scrubbed from the failures it logs.
    pub redactor: crate::security::redact::Redactor,
}

impl Default for GrpcInvokerOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            reflection_timeout: Duration::from_secs(10),
            default_timeout: Duration::from_secs(60),
            keep_alive_interval: Some(Duration::from_secs(30)),
            // tonic's default; results are further held to 256 KiB of JSON (DESIGN §3) where
            // they are recorded.
            max_response_bytes: 4 * 1024 * 1024,
            json: JsonOptions::default(),
            tls: None,
            redactor: Default::default(),
        }
    }
}

/// A participant configuration the invoker cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("participant '{alias}': endpoint \"{url}\" is not a valid URL ({reason})")]
    InvalidEndpoint { alias: String, url: String, reason: String },
    #[error("participant '{alias}': endpoint \"{url}\" must start with http:// or https://")]
    UnsupportedScheme { alias: String, url: String },
    #[error(
        "participant '{alias}': endpoint \"{url}\" is https:// but no CA is configured to check its \
         certificate; set participant-ca (--participant-ca, SAGAFLOW_PARTICIPANT_CA)"
    )]
    NoTrustedCa { alias: String, url: String },
    #[error(
        "participant alias '{alias}' may only hold letters, digits, '-', '_' and '.' (it appears \
         in grpc://<participant>/... resources)"
    )]
    InvalidAlias { alias: String },
    #[error("participant '{alias}' is not configured, so it cannot be given a descriptor pool")]
    UnknownParticipant { alias: String },
}

/// Calls participants over gRPC. Cheap to share (`Arc`), safe to call concurrently.
#[derive(Debug)]
pub struct GrpcInvoker {
    participants: BTreeMap<String, Participant>,
    options: GrpcInvokerOptions,
}

#[derive(Debug)]
struct Participant {
    target: Target,
    endpoint: Result<Endpoint, ConfigError>,
    /// Created on first use: `connect_lazy` needs a running tokio runtime, `new` does not.
    channel: OnceLock<Channel>,
    schema: RwLock<Option<Schema>>,
    /// Single-flight for fetches: concurrent first calls share one reflection round trip.
    fetching: tokio::sync::Mutex<()>,
    /// The pool was given by configuration: never fetched, never refreshed.
    pinned: bool,
}

/// A fetched pool and how many fetches produced it, so a caller that found a method missing
/// can tell whether someone already refetched since it looked.
#[derive(Debug, Clone)]
struct Schema {
    pool: DescriptorPool,
    generation: u64,
}

impl GrpcInvoker {
    /// An invoker for `participants` (alias → endpoint URL such as `http://127.0.0.1:50051`).
    /// Nothing connects until the first call. A participant whose alias or URL is unusable
    /// fails each call to it with `Sagaflow.InvalidEndpoint`; [`GrpcInvoker::try_new`] refuses
    /// it up front instead.
    pub fn new(participants: BTreeMap<String, String>, options: GrpcInvokerOptions) -> Self {
        let participants = participants
            .into_iter()
            .map(|(alias, url)| {
                let endpoint = endpoint(&alias, &url, &options);
                let participant = Participant {
                    target: Target { participant: alias.clone(), url },
                    endpoint,
                    channel: OnceLock::new(),
                    schema: RwLock::new(None),
                    fetching: tokio::sync::Mutex::new(()),
                    pinned: false,
                };
                (alias, participant)
            })
            .collect();
        Self { participants, options }
    }

    /// Like [`GrpcInvoker::new`], but refuses a configuration with an unusable participant
    /// (for startup, where a typo in a URL should stop the process, not fail tasks later).
    pub fn try_new(participants: BTreeMap<String, String>, options: GrpcInvokerOptions) -> Result<Self, ConfigError> {
        let invoker = Self::new(participants, options);
        if let Some(err) = invoker.config_errors().next() {
            return Err(err.clone());
        }
        Ok(invoker)
    }

    /// The configuration problems [`GrpcInvoker::new`] deferred, one per unusable participant.
    pub fn config_errors(&self) -> impl Iterator<Item = &ConfigError> + '_ {
        self.participants.values().filter_map(|p| p.endpoint.as_ref().err())
    }

    /// Uses `pool` for `alias` instead of reflection (a participant without reflection, or a
    /// descriptor set checked into the repository).
    pub fn with_descriptor_pool(mut self, alias: &str, pool: DescriptorPool) -> Result<Self, ConfigError> {
        let participant = self
            .participants
            .get_mut(alias)
            .ok_or_else(|| ConfigError::UnknownParticipant { alias: alias.to_owned() })?;
        participant.schema = RwLock::new(Some(Schema { pool, generation: 1 }));
        participant.pinned = true;
        Ok(self)
    }

    /// The configured participants: alias and endpoint URL.
    pub fn participants(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.participants.iter().map(|(alias, p)| (alias.as_str(), p.target.url.as_str()))
    }

    /// The participant's schema, fetched by reflection on first use (for the validator:
    /// request types of `Parameters`).
    pub async fn descriptor_pool(&self, alias: &str) -> Result<DescriptorPool, InvokeError> {
        let participant = self.participant(alias)?;
        Ok(participant.schema(None, &self.options).await?.pool)
    }

    /// Fetches the participant's schema again (after a deployment), unless it was pinned.
    pub async fn refresh_descriptor_pool(&self, alias: &str) -> Result<DescriptorPool, InvokeError> {
        let participant = self.participant(alias)?;
        let generation = participant.cached().map_or(0, |s| s.generation);
        Ok(participant.schema(Some(generation), &self.options).await?.pool)
    }

    /// The method a resource names, refetching the schema once if it is missing.
    pub async fn method(&self, resource: &GrpcResource) -> Result<MethodDescriptor, InvokeError> {
        let participant = self.participant(&resource.participant)?;
        let schema = participant.schema(None, &self.options).await?;
        if let Some(method) = find_method(&schema.pool, resource) {
            return Ok(method);
        }
        let schema = if participant.pinned {
            schema
        } else {
            participant.schema(Some(schema.generation), &self.options).await?
        };
        find_method(&schema.pool, resource).ok_or_else(|| unknown_method(&participant.target, &schema.pool, resource))
    }

    /// Makes one attempt of `call`, with a typed error ([`Invoker::invoke`] flattens it).
    ///
    /// The attempt's deadline bounds everything, reading the schema included: a first call
    /// that spends it on reflection fails with `States.Timeout` but a known outcome (nothing
    /// was sent), and the call itself gets what is left.
    pub async fn call(&self, call: &Call) -> Result<Value, InvokeError> {
        let started = Instant::now();
        let deadline = match call.timeout_seconds {
            0 => self.options.default_timeout,
            secs => Duration::from_secs(secs),
        }
        .min(MAX_TIMEOUT);
        let resource = parse_resource(&call.resource)?;
        let participant = self.participant(&resource.participant)?;
        let method = tokio::time::timeout(deadline, self.method(&resource)).await.map_err(|_elapsed| {
            InvokeError::Timeout { resource: call.resource.clone(), after: deadline, sent: false }
        })??;
        if method.is_client_streaming() || method.is_server_streaming() {
            return Err(InvokeError::UnsupportedMethod {
                target: participant.target.clone(),
                service: resource.service,
                method: resource.method,
            });
        }
        let message = request_from_json(&method.input(), &call.input)
            .map_err(|source| InvokeError::InvalidRequest { resource: call.resource.clone(), source })?;
        let path = PathAndQuery::try_from(resource.path()).map_err(|_| {
            // Unreachable for a parsed resource (identifiers only); named rather than unwrapped.
            InvokeError::InvalidResource(ResourceError {
                resource: call.resource.clone(),
                reason: "it does not form a valid HTTP/2 path",
            })
        })?;

        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(InvokeError::Timeout { resource: call.resource.clone(), after: deadline, sent: false });
        }
        let mut request = Request::new(message);
        request.set_timeout(remaining);
        insert_metadata(request.metadata_mut(), call);

        let mut grpc = Grpc::new(participant.channel()?).max_decoding_message_size(self.options.max_response_bytes);
        let codec = DynamicCodec::new(method.output());
        // The local timer covers waiting for the connection too: the attempt's budget is the
        // caller's wall-clock time, whatever it was spent on.
        let answer = tokio::time::timeout(remaining, async {
            grpc.ready().await.map_err(|err| Status::from_error(Box::new(err)))?;
            grpc.unary(request, path, codec).await
        })
        .await;
        let timed_out = || InvokeError::Timeout { resource: call.resource.clone(), after: deadline, sent: true };
        match answer {
            Err(_elapsed) => Err(timed_out()),
            // The server enforcing the `grpc-timeout` we sent can beat our own timer by a hair;
            // that is still this attempt's deadline, not a participant error.
            Ok(Err(status))
                if matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled)
                    && started.elapsed() >= deadline =>
            {
                Err(timed_out())
            }
            Ok(Err(status)) => Err(error::status_error(status, &participant.target, &call.resource)),
            Ok(Ok(response)) => response_to_json(&response.into_inner(), &self.options.json).map_err(|err| {
                InvokeError::InvalidResponse {
                    resource: call.resource.clone(),
                    reason: format!("it does not render as JSON: {err}"),
                }
            }),
        }
    }

    fn participant(&self, alias: &str) -> Result<&Participant, InvokeError> {
        self.participants.get(alias).ok_or_else(|| InvokeError::UnknownParticipant {
            alias: alias.to_owned(),
            configured: self.participants.keys().cloned().collect(),
        })
    }
}

#[async_trait]
impl Invoker for GrpcInvoker {
    async fn invoke(&self, call: &Call) -> CallOutcome {
        match self.call(call).await {
            Ok(result) => CallOutcome::Succeeded(result),
            Err(err) => {
                // A participant may quote the request in its error (a declined card's token).
                let secrets = self.options.redactor.secrets(&call.input);
                tracing::debug!(
                    resource = %call.resource,
                    state = %call.scope,
                    attempt = call.attempt,
                    error = %err.error_name(),
                    outcome_unknown = err.outcome_unknown(),
                    "task call failed: {}",
                    secrets.scrub(&err.to_string())
                );
                err.into_outcome()
            }
        }
    }
}

impl Participant {
    fn channel(&self) -> Result<Channel, InvokeError> {
        if let Some(channel) = self.channel.get() {
            return Ok(channel.clone());
        }
        let endpoint = self.endpoint.as_ref().map_err(|err| InvokeError::InvalidEndpoint(err.clone()))?;
        Ok(self.channel.get_or_init(|| endpoint.connect_lazy()).clone())
    }

    fn cached(&self) -> Option<Schema> {
        // A poisoned lock only means a panic elsewhere while writing a whole value; the value
        // itself is consistent.
        self.schema.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The cached schema, fetching it when there is none or, with `stale = Some(g)`, when the
    /// cached one is generation `g` or older (the caller found it lacking).
    async fn schema(&self, stale: Option<u64>, options: &GrpcInvokerOptions) -> Result<Schema, InvokeError> {
        let fresh = |schema: &Schema| self.pinned || stale.is_none_or(|g| schema.generation > g);
        if let Some(schema) = self.cached().filter(fresh) {
            return Ok(schema);
        }
        let _single_flight = self.fetching.lock().await;
        // Someone else may have fetched while this task waited for the lock.
        let cached = self.cached();
        if let Some(schema) = cached.clone().filter(fresh) {
            return Ok(schema);
        }
        let pool = tokio::time::timeout(options.reflection_timeout, reflection::fetch_descriptor_pool(self.channel()?))
            .await
            .unwrap_or_else(|_elapsed| {
                Err(reflection::ReflectionError::Status(Status::deadline_exceeded(format!(
                    "no answer within {}s",
                    options.reflection_timeout.as_secs_f64()
                ))))
            })
            .map_err(|err| error::reflection_error(err, &self.target))?;
        let schema = Schema { pool, generation: cached.map_or(1, |s| s.generation + 1) };
        *self.schema.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(schema.clone());
        Ok(schema)
    }
}

fn endpoint(alias: &str, url: &str, options: &GrpcInvokerOptions) -> Result<Endpoint, ConfigError> {
    if alias.is_empty() || !alias.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(ConfigError::InvalidAlias { alias: alias.to_owned() });
    }
    let https = url.starts_with("https://");
    if !url.starts_with("http://") && !https {
        return Err(ConfigError::UnsupportedScheme { alias: alias.to_owned(), url: url.to_owned() });
    }
    let invalid = |err: tonic::transport::Error| ConfigError::InvalidEndpoint {
        alias: alias.to_owned(),
        url: url.to_owned(),
        reason: source_chain(&err),
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(invalid)?;
    if https {
        let tls = options
            .tls
            .clone()
            .ok_or_else(|| ConfigError::NoTrustedCa { alias: alias.to_owned(), url: url.to_owned() })?;
        endpoint = endpoint.tls_config(tls).map_err(invalid)?;
    }
    let endpoint = endpoint.connect_timeout(options.connect_timeout).tcp_nodelay(true);
    Ok(match options.keep_alive_interval {
        Some(interval) => endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        None => endpoint,
    })
}

fn find_method(pool: &DescriptorPool, resource: &GrpcResource) -> Option<MethodDescriptor> {
    pool.get_service_by_name(&resource.service)?.methods().find(|m| m.name() == resource.method)
}

fn unknown_method(target: &Target, pool: &DescriptorPool, resource: &GrpcResource) -> InvokeError {
    let detail = match pool.get_service_by_name(&resource.service) {
        Some(service) => {
            let methods: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
            format!(
                "serves {} but it has no method '{}'{}; its methods are {}",
                resource.service,
                resource.method,
                did_you_mean(&resource.method, &methods),
                methods.join(", ")
            )
        }
        None => {
            let services: Vec<String> = pool
                .services()
                .map(|s| s.full_name().to_owned())
                .filter(|name| !name.starts_with("grpc.reflection."))
                .collect();
            format!(
                "does not serve {}{}; it serves {}",
                resource.service,
                did_you_mean(&resource.service, &services),
                if services.is_empty() { "nothing".to_owned() } else { services.join(", ") }
            )
        }
    };
    InvokeError::UnknownMethod {
        target: target.clone(),
        service: resource.service.clone(),
        method: resource.method.clone(),
        detail: format!("{detail} (checked again after refreshing its schema)"),
    }
}

fn did_you_mean(wanted: &str, known: &[String]) -> String {
    json::closest(wanted, known).map(|name| format!(" (did you mean '{name}'?)")).unwrap_or_default()
}

/// Adds the DESIGN §3 metadata. Keys come from execution ids and state names, and a state name
/// may hold any Unicode; metadata values must be visible ASCII, so other bytes (and `%`) are
/// percent-encoded — deterministic, so a compensation's `saga-compensates` still equals the
/// forward call's `idempotency-key` byte for byte.
fn insert_metadata(metadata: &mut MetadataMap, call: &Call) {
    metadata.insert(IDEMPOTENCY_KEY, ascii_value(&call.idempotency_key));
    if let Some(forward) = &call.compensates {
        metadata.insert(SAGA_COMPENSATES, ascii_value(forward));
    }
    metadata.insert(SAGAFLOW_ATTEMPT, AsciiMetadataValue::from(call.attempt));
    crate::telemetry::call::inject(metadata);
}

fn ascii_value(value: &str) -> AsciiMetadataValue {
    let encoded = percent_encode(value);
    // Visible ASCII always parses; the fallback keeps this total without a panic path.
    AsciiMetadataValue::try_from(encoded.as_str()).unwrap_or_else(|_| AsciiMetadataValue::from_static("invalid"))
}

/// Percent-encodes every byte outside visible ASCII (`!`..=`~`), and `%` itself.
pub fn percent_encode(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (b'!'..=b'~').contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encodes_non_visible_ascii() {
        assert_eq!(percent_encode("exec-1/Charge/forward"), "exec-1/Charge/forward");
        assert_eq!(percent_encode("a b%c"), "a%20b%25c");
        assert_eq!(percent_encode("Zahlung€"), "Zahlung%E2%82%AC");
    }

    #[test]
    fn refuses_bad_configuration() {
        let make = |alias: &str, url: &str| {
            GrpcInvoker::try_new(BTreeMap::from([(alias.to_owned(), url.to_owned())]), GrpcInvokerOptions::default())
        };
        assert!(make("payment", "http://127.0.0.1:50051").is_ok());
        let lenient = GrpcInvoker::new(
            BTreeMap::from([("payment".to_owned(), "ftp://x".to_owned())]),
            GrpcInvokerOptions::default(),
        );
        assert_eq!(lenient.config_errors().count(), 1);
        assert!(matches!(make("payment", "https://payment:443"), Err(ConfigError::NoTrustedCa { .. })));
        assert!(matches!(make("payment", "grpc://payment:443"), Err(ConfigError::UnsupportedScheme { .. })));
        let tls = GrpcInvokerOptions { tls: Some(tonic::transport::ClientTlsConfig::new()), ..Default::default() };
        assert!(
            GrpcInvoker::try_new(BTreeMap::from([("payment".to_owned(), "https://payment:443".to_owned())]), tls)
                .is_ok()
        );
        assert!(matches!(make("payment", "http://bad host"), Err(ConfigError::InvalidEndpoint { .. })));
        assert!(matches!(make("pay ment", "http://x:1"), Err(ConfigError::InvalidAlias { .. })));
    }
}
