//! `sagaflow serve`: the orchestrator alone. Configuration comes from defaults, then an
//! optional TOML file (`--config`), then `SAGAFLOW_*` environment variables, then flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use tracing::{info, warn};

use crate::engine::definitions::DirError;
use crate::engine::{Engine, EngineConfig};
use crate::invoker::grpc::GrpcInvoker;
use crate::store::open_store_with;

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
        config.validate()?;
        Ok(config)
    }

    /// Refuse settings that cannot work, saying what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.database_url.is_none() {
            bail!(
                "no database: set --database-url or DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/sagaflow, or sqlite://.sagaflow-data/sagaflow.db for one replica)"
            );
        }
        for (name, url) in &self.participants {
            if name.is_empty() || !url.starts_with("http://") {
                bail!(
                    "participant {name:?}={url:?}: use NAME=http://HOST:PORT (TLS to participants is not supported yet)"
                );
            }
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
    super::init_logging(tracing::Level::INFO);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let url = config.database_url.clone().unwrap_or_default();
    // PostgreSQL for any number of replicas; SQLite (a path or sqlite: URL) for one.
    let store = open_store_with(&url, config.db_connections.unwrap_or(16))
        .await
        .with_context(|| format!("connecting to the database at {}", redact(&url)))?;
    store.migrate().await.context("applying the orchestrator's migrations")?;
    let invoker = Arc::new(
        GrpcInvoker::try_new(config.participants.clone(), Default::default())
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
    crate::api::serve(engine.clone(), listener, super::shutdown_signal()).await.context("serving the API")?;
    info!("shutting down: releasing leases");
    engine.shutdown().await;
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
