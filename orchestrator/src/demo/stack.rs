//! Everything in one process, for `sagaflow demo` and `sagaflow dev`: the four participants
//! (each on its own embedded database file, or external ones given by URL), the orchestrator
//! engine on its own store (embedded SQLite by default), and the gRPC API on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sagaflow_participants::ServiceKind;
use sagaflow_participants::embedded::EmbeddedParticipants;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineConfig};
use crate::invoker::grpc::GrpcInvoker;
use crate::store::open_store;

/// The order saga, built into the binary so the demo runs from anywhere.
pub const ORDER_DEFINITION: &str = include_str!("../../../saga-definitions/order.asl.json");

/// Where the stack keeps its data and which parts it starts.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub data_dir: PathBuf,
    /// The orchestrator's database; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// External participants by alias; empty: start the four in-process.
    pub participants: BTreeMap<String, String>,
    /// The API address; port 0 picks a free one.
    pub listen: SocketAddr,
}

/// A running stack; dropping it does not stop it, `shutdown` does.
pub struct Stack {
    pub engine: Engine,
    pub api: SocketAddr,
    /// Participant alias → URL.
    pub participants: BTreeMap<String, String>,
    cancel: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("api", &self.api).field("participants", &self.participants).finish()
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("creating the data directory {}", options.data_dir.display()))?;
        let cancel = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let participants = if options.participants.is_empty() {
            start_participants(&options.data_dir, &cancel, &mut tasks).await?
        } else {
            options.participants.clone()
        };
        let url = options.database_url.clone().unwrap_or_else(|| sqlite_url(&options.data_dir.join("orchestrator.db")));
        let store = open_store(&url).await.with_context(|| format!("opening the orchestrator's store at {url}"))?;
        store.migrate().await.context("applying the orchestrator's migrations")?;
        let invoker = Arc::new(GrpcInvoker::new(participants.clone(), Default::default()));
        let engine = Engine::new(store, invoker, EngineConfig::default());
        engine
            .definitions()
            .register("order", ORDER_DEFINITION)
            .await
            .map_err(|e| anyhow::anyhow!("registering the order saga: {e}"))?;
        engine.spawn_loops();
        let listener = crate::api::bind(options.listen).await?;
        let api = listener.local_addr()?;
        let serving = engine.clone();
        let stop = cancel.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::api::serve(serving, listener, async move { stop.cancelled().await }).await {
                tracing::error!(error = %e, "the API stopped");
            }
        });
        Ok(Stack { engine, api, participants, cancel, tasks })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Stop the API and the participants, release the engine's leases.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.engine.shutdown().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The four demo participants in this process, each on its own database file and port.
async fn start_participants(
    data_dir: &Path,
    cancel: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let participants = EmbeddedParticipants::start(data_dir, &ServiceKind::ALL, true)
        .await
        .context("starting the demo participants")?;
    let urls = participants
        .addrs()
        .iter()
        .map(|(service, addr)| (alias(*service).to_owned(), format!("http://{addr}")))
        .collect();
    let stop = cancel.clone();
    tasks.spawn(async move {
        stop.cancelled().await;
        if let Err(e) = participants.shutdown().await {
            tracing::warn!(error = %e, "a demo participant did not stop cleanly");
        }
    });
    Ok(urls)
}

/// The alias definitions use for a participant (`grpc://payment/...`).
fn alias(service: ServiceKind) -> &'static str {
    match service {
        ServiceKind::Payment => "payment",
        ServiceKind::Inventory => "inventory",
        ServiceKind::Fraud => "fraud",
        ServiceKind::Fulfillment => "fulfillment",
    }
}
