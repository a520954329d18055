//! `sagaflow demo` (a batch of orders through the whole system, in one process) and
//! `sagaflow dev` (the same stack, left running).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::demo::{self, DemoOptions, DevOptions};

#[derive(Debug, Args)]
pub struct StackArgs {
    /// Where the embedded databases live.
    #[arg(long, env = "SAGAFLOW_DATA_DIR", default_value = ".sagaflow-data")]
    pub data_dir: PathBuf,
    /// Use this orchestrator database instead of embedded SQLite (e.g. a PostgreSQL URL).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Use running participants instead of in-process ones (NAME=URL, repeatable).
    #[arg(long = "participant", value_delimiter = ',')]
    pub participants: Vec<String>,
}

impl StackArgs {
    fn participants(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.participants
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map(|(n, u)| (n.trim().to_owned(), u.trim().to_owned()))
                    .with_context(|| format!("--participant {e:?} must read NAME=URL"))
            })
            .collect()
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many orders to run.
    #[arg(long, default_value_t = 50)]
    pub orders: usize,
    /// How many sagas run at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seed of the order mix (the same seed places the same orders).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not inject the transient faults that Retry absorbs.
    #[arg(long)]
    pub no_faults: bool,
    /// Keep the data of earlier runs (by default the demo starts from a clean slate).
    #[arg(long)]
    pub keep_data: bool,
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address of the gRPC API.
    #[arg(long, env = "SAGAFLOW_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    // The injected faults are the point of the demo: the participants need not shout about them.
    super::init_logging_with("warn,sagaflow_participants=error");
    let data_dir = args.stack.data_dir.join("demo");
    if !args.keep_data && data_dir.exists() {
        std::fs::remove_dir_all(&data_dir).with_context(|| format!("clearing {}", data_dir.display()))?;
    }
    let options = DemoOptions {
        orders: args.orders,
        concurrency: args.concurrency,
        seed: args.seed,
        data_dir,
        database_url: args.stack.database_url.clone(),
        participants: args.stack.participants()?,
        faults: !args.no_faults,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let ok = runtime.block_on(demo::run(options))?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    super::init_logging(tracing::Level::INFO);
    let options = DevOptions {
        data_dir: args.stack.data_dir.join("dev"),
        database_url: args.stack.database_url.clone(),
        participants: args.stack.participants()?,
        listen: args.listen,
    };
    tokio::runtime::Runtime::new()?.block_on(demo::dev(options))?;
    Ok(ExitCode::SUCCESS)
}
