//! `sagaflow serve`: the orchestrator alone. Configuration comes from defaults, then an
//! optional TOML file (`--config`), then `SAGAFLOW_*` environment variables, then flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sagaflow_participants::kit::telemetry::{LogFormat, metrics_http};
use serde::Deserialize;
use tonic::transport::ClientTlsConfig;
use tracing::{info, warn};

use crate::engine::definitions::DirError;
use crate::engine::{Engine, EngineConfig};
use crate::invoker::grpc::{GrpcInvoker, GrpcInvokerOptions};
use crate::security::ApiSecurity;
use crate::security::auth::{AuthLayer, Exempt, Policy, Tokens};
use crate::security::redact::Redactor;
use crate::security::tls::{ClientTlsFiles, ServerTlsFiles, TlsError};
use crate::store::{Store, StoreError, open_store_with};
use crate::telemetry::EngineMetrics;

/// The environment variable holding accepted bearer tokens (comma- or space-separated).
pub const AUTH_TOKENS_ENV: &str = "SAGAFLOW_AUTH_TOKENS";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "SAGAFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the gRPC API [default: 127.0.0.1:7070].
    #[arg(long, env = "SAGAFLOW_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The orchestrator's database: a PostgreSQL URL (several replicas may share it) or a
    /// SQLite file (`sqlite://PATH`, one replica).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder of saga definitions (*.asl.json) to validate and register at start.
    #[arg(long, env = "SAGAFLOW_DEFINITIONS")]
    pub definitions: Option<PathBuf>,
    /// A participant endpoint, NAME=URL (repeat the flag, or comma-separate in the variable).
    #[arg(long = "participant", env = "SAGAFLOW_PARTICIPANTS", value_delimiter = ',')]
    pub participants: Vec<String>,
    /// How long a lease lasts before another replica may take an execution over [default: 15s].
    #[arg(long, env = "SAGAFLOW_LEASE", value_parser = humantime::parse_duration)]
    pub lease: Option<Duration>,
    /// This replica's name in leases [default: a generated one].
    #[arg(long, env = "SAGAFLOW_REPLICA")]
    pub replica: Option<String>,
    /// Database connections in the pool [default: 16].
    #[arg(long, env = "SAGAFLOW_DB_CONNECTIONS")]
    pub db_connections: Option<u32>,
    /// Serve the API over TLS with this certificate chain (PEM); needs --tls-key [default: plaintext].
    #[arg(long, env = "SAGAFLOW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SAGAFLOW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require API clients to present a certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "SAGAFLOW_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) that signed the certificates of `https://` participants.
    #[arg(long, env = "SAGAFLOW_PARTICIPANT_CA")]
    pub participant_ca: Option<PathBuf>,
    /// The certificate (PEM) shown to participants that require one (mutual TLS); needs
    /// --participant-client-key.
    #[arg(long, env = "SAGAFLOW_PARTICIPANT_CLIENT_CERT")]
    pub participant_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --participant-client-cert.
    #[arg(long, env = "SAGAFLOW_PARTICIPANT_CLIENT_KEY")]
    pub participant_client_key: Option<PathBuf>,
    /// Require a bearer token on API calls: a file of accepted tokens, one per line (tokens
    /// may also come from SAGAFLOW_AUTH_TOKENS) [default: no authentication].
    #[arg(long, env = "SAGAFLOW_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// Services callable without a token when authentication is on: health, reflection, or
    /// none (comma-separated) [default: health].
    #[arg(long, env = "SAGAFLOW_AUTH_EXEMPT", value_delimiter = ',')]
    pub auth_exempt: Vec<String>,
    /// Mask the values at this JSON path in every API answer, e.g. `$..paymentToken` (repeat
    /// the flag, or comma-separate in the variable) [default: none].
    #[arg(long = "redact", env = "SAGAFLOW_REDACT", value_delimiter = ',')]
    pub redact: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics`, e.g. `127.0.0.1:9464` [default: off].
    #[arg(long, env = "SAGAFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log lines on stderr as `human` text or `json` objects [default: human]. Traces go over
    /// OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`OTEL_SERVICE_NAME`, default `sagaflow`).
    #[arg(long, value_enum, env = "SAGAFLOW_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The settings `serve` runs with, after every layer is applied.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeConfig {
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub definitions: Option<PathBuf>,
    /// Participant aliases to endpoint URLs.
    #[serde(default)]
    pub participants: BTreeMap<String, String>,
    #[serde(default, with = "humantime_opt")]
    pub lease: Option<Duration>,
    pub replica: Option<String>,
    pub db_connections: Option<u32>,
    /// API TLS: the server's certificate chain and private key (PEM files); unset: plaintext.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The CA API clients' certificates must be signed by (mutual TLS); unset: none asked.
    pub tls_client_ca: Option<PathBuf>,
    /// The CA that signed `https://` participants' certificates (PEM).
    pub participant_ca: Option<PathBuf>,
    /// The certificate and key shown to participants that require one (PEM).
    pub participant_client_cert: Option<PathBuf>,
    pub participant_client_key: Option<PathBuf>,
    /// Accepted bearer tokens, one per line; with `SAGAFLOW_AUTH_TOKENS`, turns authentication on.
    pub auth_tokens_file: Option<PathBuf>,
    /// Services callable without a token: `health`, `reflection` [default: `["health"]`].
    pub auth_exempt: Option<Vec<String>>,
    /// JSON paths masked in every API answer and in logged call failures [default: none].
    #[serde(default)]
    pub redact: Vec<String>,
    /// Where `/metrics` is served; unset: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Human (default) or JSON log lines.
    pub log_format: Option<LogFormat>,
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

impl ServeConfig {
    /// Layer the file (if any) under the flags and environment.
    pub fn load(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("{} is not a valid configuration", path.display()))?
            }
            None => ServeConfig::default(),
        };
        if args.listen.is_some() {
            config.listen = args.listen;
        }
        if args.database_url.is_some() {
            config.database_url.clone_from(&args.database_url);
        }
        if args.definitions.is_some() {
            config.definitions.clone_from(&args.definitions);
        }
        for entry in &args.participants {
            let (name, url) = entry.split_once('=').with_context(|| {
                format!("--participant {entry:?} must read NAME=URL, e.g. payment=http://127.0.0.1:50051")
            })?;
            config.participants.insert(name.trim().to_owned(), url.trim().to_owned());
        }
        if args.lease.is_some() {
            config.lease = args.lease;
        }
        if args.replica.is_some() {
            config.replica.clone_from(&args.replica);
        }
        if args.db_connections.is_some() {
            config.db_connections = args.db_connections;
        }
        for (flag, setting) in [
            (&args.tls_cert, &mut config.tls_cert),
            (&args.tls_key, &mut config.tls_key),
            (&args.tls_client_ca, &mut config.tls_client_ca),
            (&args.participant_ca, &mut config.participant_ca),
            (&args.participant_client_cert, &mut config.participant_client_cert),
            (&args.participant_client_key, &mut config.participant_client_key),
            (&args.auth_tokens_file, &mut config.auth_tokens_file),
        ] {
            if flag.is_some() {
                setting.clone_from(flag);
            }
        }
        if !args.auth_exempt.is_empty() {
            config.auth_exempt = Some(args.auth_exempt.clone());
        }
        if !args.redact.is_empty() {
            config.redact.clone_from(&args.redact);
        }
        if args.metrics_listen.is_some() {
            config.metrics_listen = args.metrics_listen;
        }
        if args.log_format.is_some() {
            config.log_format = args.log_format;
        }
        config.validate()?;
        Ok(config)
    }

    fn api_tls_files(&self) -> Result<Option<ServerTlsFiles>, TlsError> {
        let names = ["tls-cert", "tls-key", "tls-client-ca"];
        ServerTlsFiles::from_settings(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
            names,
        )
    }

    fn participant_tls_files(&self) -> Result<Option<ClientTlsFiles>, TlsError> {
        let names = ["participant-ca", "participant-client-cert", "participant-client-key"];
        let (ca, cert, key) = (&self.participant_ca, &self.participant_client_cert, &self.participant_client_key);
        ClientTlsFiles::from_settings(ca.as_deref(), cert.as_deref(), key.as_deref(), names)
    }

    /// The API's TLS, bearer tokens (the file and `SAGAFLOW_AUTH_TOKENS`) and redaction, with
    /// every file read and checked.
    pub fn api_security(&self) -> anyhow::Result<ApiSecurity> {
        let tls = self.api_tls_files()?.map(|files| files.load()).transpose()?;
        let mut tokens = Tokens::default();
        if let Some(file) = &self.auth_tokens_file {
            tokens.extend(Tokens::from_file(file)?);
        }
        // Tokens are read from the environment only here, so they are never part of the
        // configuration that is printed or parsed from flags (visible in `ps`).
        if let Ok(value) = std::env::var(AUTH_TOKENS_ENV)
            && !value.trim().is_empty()
        {
            tokens.extend(Tokens::from_env_value(AUTH_TOKENS_ENV, &value)?);
        }
        let auth = if tokens.is_empty() {
            AuthLayer::off()
        } else {
            let exempt = match &self.auth_exempt {
                Some(list) => Exempt::parse_list(list)?,
                None => Exempt::DEFAULT.to_vec(),
            };
            AuthLayer::new(Policy { tokens, exempt })
        };
        Ok(ApiSecurity { tls, auth, redactor: Redactor::new(&self.redact)? })
    }

    /// TLS towards `https://` participants, with the files read and checked.
    pub fn participant_tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        Ok(self.participant_tls_files()?.map(|files| files.load()).transpose()?)
    }

    /// Refuse settings that cannot work, saying what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.database_url.is_none() {
            bail!(
                "no database: set --database-url or DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/sagaflow, or sqlite://.sagaflow-data/sagaflow.db for one replica)"
            );
        }
        for (name, url) in &self.participants {
            if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("participant {name:?}={url:?}: use NAME=http://HOST:PORT, or NAME=https://HOST:PORT over TLS");
            }
            if url.starts_with("https://") && self.participant_ca.is_none() {
                bail!(
                    "participant {name}={url} is https://: set participant-ca (--participant-ca, SAGAFLOW_PARTICIPANT_CA) \
                     to the CA that signed its certificate"
                );
            }
        }
        self.api_tls_files()?;
        self.participant_tls_files()?;
        Redactor::new(&self.redact)?;
        if let Some(list) = &self.auth_exempt {
            Exempt::parse_list(list)?;
        }
        if let Some(lease) = self.lease
            && lease < Duration::from_secs(1)
        {
            bail!("lease {lease:?} is too short: use at least 1s (default 15s)");
        }
        Ok(())
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = ServeConfig::load(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // The OTLP exporter's channel lives on the runtime, so telemetry starts inside it.
    let telemetry = {
        let _inside = runtime.enter();
        crate::telemetry::init(&crate::telemetry::TelemetryOptions {
            service_name: "sagaflow",
            log_format: config.log_format.unwrap_or_default(),
            directives: "info".to_owned(),
        })?
    };
    let result = runtime.block_on(serve(config));
    telemetry.shutdown();
    result?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let url = config.database_url.clone().unwrap_or_default();
    // PostgreSQL for any number of replicas; SQLite (a path or sqlite: URL) for one.
    let Some(store) = open_when_available(&url, config.db_connections.unwrap_or(16)).await? else {
        info!("stopped while waiting for the database");
        return Ok(());
    };
    let security = config.api_security()?;
    let invoker_options = GrpcInvokerOptions {
        tls: config.participant_tls()?,
        redactor: security.redactor.clone(),
        ..Default::default()
    };
    let invoker = Arc::new(
        GrpcInvoker::try_new(config.participants.clone(), invoker_options)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("checking the participants' endpoints")?,
    );
    let mut engine_config = EngineConfig::default();
    if let Some(lease) = config.lease {
        engine_config.lease = lease;
    }
    if let Some(replica) = &config.replica {
        engine_config.owner.clone_from(replica);
    }
    let metrics_stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = config.metrics_listen {
        let listener = metrics_http::bind(addr).await?;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = EngineMetrics::register(&mut registry);
        engine_config.metrics = Some(metrics.clone());
        info!(address = %listener.local_addr()?, "metrics at /metrics");
        let stop = metrics_stop.clone();
        let render = crate::telemetry::metrics::render(Arc::new(registry), metrics, store.clone());
        metrics_http::spawn(listener, render, async move { stop.cancelled().await });
    }
    let engine = Engine::new(store, invoker.clone(), engine_config);
    if let Some(dir) = &config.definitions {
        match engine.definitions().register_dir(dir).await {
            Ok(registered) => {
                spawn_type_check(&engine, invoker.clone(), &registered);
                for r in registered {
                    info!(definition = %r.record.name, version = r.record.version, new = r.created, "definition ready");
                    for w in &r.warnings {
                        warn!(definition = %r.record.name, "{}", w.display_in(&r.record.name));
                    }
                }
            }
            Err(DirError::Invalid(files)) => {
                for f in &files {
                    for d in &f.diagnostics.0 {
                        eprintln!("{}", d.display_in(&f.file.display().to_string()));
                    }
                }
                bail!("{} definition file(s) in {} are invalid; fix them and start again", files.len(), dir.display());
            }
            Err(e) => return Err(e).context("registering definitions"),
        }
    }
    let listen = config.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7070)));
    let listener = crate::api::bind(listen).await?;
    info!(address = %listener.local_addr()?, replica = %engine.owner(), participants = ?config.participants, "sagaflow serving");
    engine.spawn_loops();
    let tls = match (&config.tls_cert, &config.tls_client_ca) {
        (None, _) => "off",
        (Some(_), None) => "on",
        (Some(_), Some(_)) => "mutual",
    };
    info!(tls, bearer_tokens = security.auth.is_on(), redact = ?config.redact, "API security");
    if security.auth.is_on() && security.tls.is_none() {
        warn!("bearer tokens are on without TLS: they cross the network in clear text (set tls-cert and tls-key)");
    }
    crate::api::serve_with(engine.clone(), listener, super::shutdown_signal(), security)
        .await
        .context("serving the API")?;
    info!("shutting down: releasing leases");
    engine.shutdown().await;
    metrics_stop.cancel();
    Ok(())
}

/// Check the definitions' Parameters against the participants' message types in the
/// background: participants may start after the orchestrator, so findings are logged, not
/// fatal (`sagaflow validate --participant` makes them errors before a deployment).
fn spawn_type_check(engine: &Engine, invoker: Arc<GrpcInvoker>, registered: &[crate::engine::definitions::Registered]) {
    let ids: Vec<(String, i64)> = registered.iter().map(|r| (r.record.name.clone(), r.record.id)).collect();
    let engine = engine.clone();
    tokio::spawn(async move {
        for (name, id) in ids {
            let Ok(definition) = engine.definitions().compiled(id).await else { continue };
            for f in crate::invoker::typecheck::check_definition(&invoker, &definition).await {
                if f.is_problem {
                    warn!(definition = %name, pointer = %f.pointer, "{}", f.message);
                } else {
                    info!(definition = %name, pointer = %f.pointer, "{}", f.message);
                }
            }
        }
    });
}

/// Connect to the database and migrate it, waiting while it is unavailable: a replica
/// started during a database restart or failover comes up when the database does, instead
/// of exiting (and crash-looping under its supervisor). Any other error ends the start.
/// `None` when a shutdown signal arrives first.
async fn open_when_available(url: &str, connections: u32) -> anyhow::Result<Option<Arc<dyn Store>>> {
    let shutdown = super::shutdown_signal();
    tokio::pin!(shutdown);
    let mut delay = Duration::from_millis(250);
    loop {
        let error = match open_store_with(url, connections).await {
            Ok(store) => match store.migrate().await {
                Ok(()) => return Ok(Some(store)),
                Err(StoreError::Unavailable(e)) => e,
                Err(e) => return Err(e).context("applying the orchestrator's migrations"),
            },
            Err(StoreError::Unavailable(e)) => e,
            Err(e) => return Err(e).with_context(|| format!("connecting to the database at {}", redact(url))),
        };
        warn!(database = %redact(url), error = %error, retry_in = ?delay, "database unavailable; waiting for it");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod security_tests {
    use super::*;

    fn config(toml_text: &str) -> anyhow::Result<ServeConfig> {
        let config: ServeConfig = toml::from_str(toml_text)?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn security_settings_read_from_the_file_and_are_checked() {
        let ok = config(
            r#"
            database-url = "sqlite://x.db"
            participants = { payment = "https://127.0.0.1:50061" }
            participant-ca = "ca.pem"
            tls-cert = "api.pem"
            tls-key = "api.key"
            auth-tokens-file = "tokens"
            auth-exempt = ["health", "reflection"]
            redact = ["$..paymentToken", "$.card.number"]
            "#,
        )
        .expect("valid");
        assert_eq!(ok.redact.len(), 2);
        let err = config("database-url = \"sqlite://x.db\"\nparticipants = { payment = \"https://p:1\" }")
            .expect_err("https without a CA");
        assert!(err.to_string().contains("participant-ca"), "{err}");
        let err = config("database-url = \"sqlite://x.db\"\ntls-cert = \"api.pem\"").expect_err("no key");
        assert!(err.to_string().contains("tls-key"), "{err}");
        let err = config("database-url = \"sqlite://x.db\"\nredact = [\"paymentToken\"]").expect_err("bad path");
        assert!(err.to_string().contains("$.paymentToken"), "{err}");
        let err = config("database-url = \"sqlite://x.db\"\nauth-exempt = [\"metrics\"]").expect_err("bad group");
        assert!(err.to_string().contains("health, reflection"), "{err}");
    }
}
