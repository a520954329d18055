//! A whole Sagaflow on one machine for one test: two fresh databases (the orchestrator's and
//! the participants'), the four participants as separate processes (so one can die while the
//! others compensate), and one or more `sagaflow serve` replicas.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sagaflow_proto::fulfillment::v1::fulfillment_client::FulfillmentClient;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::payment::v1::payment_client::PaymentClient;
use sagaflow_proto::sagaflow::v1::order_service_client::OrderServiceClient;
use sagaflow_proto::sagaflow::v1::saga_service_client::SagaServiceClient;
use sqlx::Connection;
use tonic::transport::{Channel, ClientTlsConfig};

use crate::process::{Process, binary, free_port};

pub const PARTICIPANTS: [&str; 4] = ["payment", "inventory", "fraud", "fulfillment"];
const READY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub replicas: usize,
    /// Lease of each replica: short, so takeovers happen within a test.
    pub lease: Duration,
    /// The server to make the databases on, as an admin URL (default: `DATABASE_URL`).
    pub database_url: Option<String>,
    /// `RUST_LOG` of the replicas (default: `info,sagaflow=debug`).
    pub log_filter: Option<String>,
    /// More arguments for every participant process (e.g. TLS files).
    pub participant_args: Vec<String>,
    /// More arguments for every `sagaflow serve` replica (e.g. TLS, tokens, redaction).
    pub serve_args: Vec<String>,
    /// How the harness reaches participants that serve TLS (CA, client certificate).
    pub participant_tls: Option<ClientTlsConfig>,
    /// How the harness reaches replicas whose API serves TLS.
    pub api_tls: Option<ClientTlsConfig>,
    /// More environment for every process, participants and replicas (e.g. `OTEL_*`).
    pub envs: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            replicas: 1,
            lease: Duration::from_secs(3),
            database_url: None,
            log_filter: None,
            participant_args: Vec::new(),
            serve_args: Vec::new(),
            participant_tls: None,
            api_tls: None,
            envs: Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct Cluster {
    admin_url: String,
    databases: Vec<String>,
    pub orchestrator_db: String,
    pub participants_db: String,
    pub participants: BTreeMap<&'static str, Process>,
    /// The URL replicas started from now on use for a participant, where it is not the
    /// participant's own address (e.g. a fault-injecting proxy in front of it).
    pub routes: BTreeMap<&'static str, String>,
    pub replicas: Vec<Process>,
    pub log_dir: PathBuf,
    options: Options,
}

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn database_url() -> anyhow::Result<String> {
    std::env::var("DATABASE_URL")
        .context("DATABASE_URL is not set: run the suite with ./scripts/test.sh (it starts a throwaway PostgreSQL)")
}

/// `url` pointing at database `name` instead.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let cut = base.rfind('/').filter(|i| *i > base.find("//").map(|j| j + 1).unwrap_or(0)).unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fresh, empty database on the `DATABASE_URL` server: its URL and a guard that drops it.
pub async fn fresh_database(prefix: &str) -> anyhow::Result<(String, FreshDatabase)> {
    let admin_url = database_url()?;
    let name = format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.context("connecting to DATABASE_URL")?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
    Ok((with_database(&admin_url, &name), FreshDatabase { admin_url, name }))
}

/// A database made by [`fresh_database`]; [`FreshDatabase::drop_it`] removes it.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    pub name: String,
}

impl FreshDatabase {
    pub async fn drop_it(self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut admin).await?;
        Ok(())
    }
}

impl Cluster {
    pub async fn start(options: Options) -> anyhow::Result<Cluster> {
        let admin_url = match &options.database_url {
            Some(url) => url.clone(),
            None => database_url()?,
        };
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let orchestrator = format!("e2e_{tag}_orch");
        let participants = format!("e2e_{tag}_parts");
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.context("connecting to DATABASE_URL")?;
        for db in [&orchestrator, &participants] {
            sqlx::query(&format!("CREATE DATABASE \"{db}\"")).execute(&mut admin).await?;
        }
        let log_dir = std::env::temp_dir().join(format!("sagaflow-e2e-{tag}"));
        std::fs::create_dir_all(&log_dir)?;
        let mut cluster = Cluster {
            orchestrator_db: with_database(&admin_url, &orchestrator),
            participants_db: with_database(&admin_url, &participants),
            admin_url,
            databases: vec![orchestrator, participants],
            participants: BTreeMap::new(),
            routes: BTreeMap::new(),
            replicas: Vec::new(),
            log_dir,
            options,
        };
        let participant_bin = binary("sagaflow-participant")?;
        for name in PARTICIPANTS {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let mut args = vec![
                name.to_owned(),
                "--listen".into(),
                addr.to_string(),
                "--database-url".into(),
                cluster.participants_db.clone(),
            ];
            if name == "inventory" {
                args.push("--seed-demo-catalog".into());
            }
            args.extend(cluster.options.participant_args.iter().cloned());
            let envs = cluster.options.envs.clone();
            let mut process = Process::start(name, participant_bin.clone(), addr, args, envs, &cluster.log_dir)?;
            if let Some(tls) = &cluster.options.participant_tls {
                process.use_tls(tls.clone());
            }
            cluster.participants.insert(name, process);
        }
        for p in cluster.participants.values_mut() {
            p.ready(READY).await?;
        }
        for i in 0..cluster.options.replicas {
            cluster.add_replica(&format!("replica-{i}")).await?;
        }
        Ok(cluster)
    }

    /// Start one more `sagaflow serve` replica on the same database.
    pub async fn add_replica(&mut self, name: &str) -> anyhow::Result<usize> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut args = vec![
            "serve".to_owned(),
            "--listen".into(),
            addr.to_string(),
            "--database-url".into(),
            self.orchestrator_db.clone(),
            "--definitions".into(),
            repo_root().join("saga-definitions").display().to_string(),
            "--lease".into(),
            format!("{}ms", self.options.lease.as_millis()),
            "--replica".into(),
            name.to_owned(),
        ];
        for (participant, process) in &self.participants {
            let url = self.routes.get(participant).cloned().unwrap_or_else(|| process.url());
            args.push("--participant".into());
            args.push(format!("{participant}={url}"));
        }
        let filter = self.options.log_filter.clone().unwrap_or_else(|| "info,sagaflow=debug".to_owned());
        let mut envs = vec![("RUST_LOG".to_owned(), filter)];
        envs.extend(self.options.envs.iter().cloned());
        args.extend(self.options.serve_args.iter().cloned());
        let mut process = Process::start(name, binary("sagaflow")?, addr, args, envs, &self.log_dir)?;
        if let Some(tls) = &self.options.api_tls {
            process.use_tls(tls.clone());
        }
        process.ready(READY).await?;
        self.replicas.push(process);
        Ok(self.replicas.len() - 1)
    }

    /// A connection to one of the processes, over TLS when it serves TLS.
    pub async fn channel(process: &Process) -> anyhow::Result<Channel> {
        let mut endpoint = Channel::from_shared(process.url())?.connect_timeout(Duration::from_secs(5));
        if let Some(tls) = process.tls() {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(endpoint.connect().await?)
    }

    pub async fn orders(&self, replica: usize) -> anyhow::Result<OrderServiceClient<Channel>> {
        Ok(OrderServiceClient::new(Self::channel(&self.replicas[replica]).await?))
    }

    pub async fn sagas(&self, replica: usize) -> anyhow::Result<SagaServiceClient<Channel>> {
        Ok(SagaServiceClient::new(Self::channel(&self.replicas[replica]).await?))
    }

    pub async fn payment(&self) -> anyhow::Result<PaymentClient<Channel>> {
        Ok(PaymentClient::new(Self::channel(&self.participants["payment"]).await?))
    }

    pub async fn inventory(&self) -> anyhow::Result<InventoryClient<Channel>> {
        Ok(InventoryClient::new(Self::channel(&self.participants["inventory"]).await?))
    }

    pub async fn fulfillment(&self) -> anyhow::Result<FulfillmentClient<Channel>> {
        Ok(FulfillmentClient::new(Self::channel(&self.participants["fulfillment"]).await?))
    }

    pub async fn chaos(&self, participant: &str) -> anyhow::Result<ChaosClient<Channel>> {
        Ok(ChaosClient::new(Self::channel(&self.participants[participant]).await?))
    }

    /// Transactions committed in the orchestrator's database so far (pg_stat_database).
    pub async fn orchestrator_commits(&self) -> anyhow::Result<i64> {
        // Backends report their counts at most once a second (and when idle): let them.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut conn).await?;
        let name = &self.databases[0];
        let commits: i64 = sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        Ok(commits)
    }

    /// Stop everything and drop the databases.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for r in &mut self.replicas {
            r.kill();
        }
        for p in self.participants.values_mut() {
            p.kill();
        }
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        for db in &self.databases {
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).execute(&mut admin).await?;
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
        Ok(())
    }

    /// The last lines of every process's log, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in self.replicas.iter().chain(self.participants.values()) {
            out.push_str(&format!("---- {} ----\n{}\n", p.name, p.log_tail(30)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(super::with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
        assert_eq!(
            super::with_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
    }
}
