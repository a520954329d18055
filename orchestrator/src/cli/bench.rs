//! `sagaflow bench`: one benchmark run against a real PostgreSQL, printed as one line (or one
//! JSON object). See [`crate::bench`] for what runs and what each figure means.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::Output;
use crate::bench::{self, BenchOptions, Participants, SagaPath};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The PostgreSQL database to run in (`postgres://...`); it must be empty unless
    /// --allow-existing-data. With --create-database: the server (and database to connect to)
    /// on which a throwaway database is made.
    #[arg(long, env = "SAGAFLOW_BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Sagas measured (after the warm-up).
    #[arg(long, default_value_t = 2000)]
    pub orders: usize,
    /// Sagas run first and not measured (default: orders/10, at most 300).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Sagas in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// echo: participants that answer at once and write nothing; demo: the real ones.
    #[arg(long, value_enum, default_value_t = Participants::Echo)]
    pub participants: Participants,
    /// success: four Tasks; compensate: the third fails and two compensations run.
    #[arg(long, value_enum, default_value_t = SagaPath::Success)]
    pub path: SagaPath,
    /// Engines (replicas) in this process sharing the database.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Run even though the database holds other data (what existed before is kept).
    #[arg(long)]
    pub allow_existing_data: bool,
    /// Create a throwaway database on the server and drop it afterwards.
    #[arg(long)]
    pub create_database: bool,
    /// Pause before each reading of pg_stat_database (PostgreSQL reports commits lazily).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "11s")]
    pub stats_wait: Duration,
    /// Before measuring, fill the database with copies of finished sagas (history included)
    /// until it holds this many completed executions (e.g. 1000000), to measure at scale.
    #[arg(long, value_name = "N")]
    pub preload_completed: Option<i64>,
    /// Keep the database (or schemas) the benchmark created, e.g. to reuse a preloaded one
    /// in later runs with --allow-existing-data.
    #[arg(long)]
    pub keep_data: bool,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    // Traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set, as with `serve`, so what tracing
    // costs can be measured; the exporter's channel lives on the runtime.
    let telemetry = {
        let _inside = runtime.enter();
        crate::telemetry::init(&crate::telemetry::TelemetryOptions {
            service_name: "sagaflow",
            log_format: crate::telemetry::LogFormat::Human,
            directives: "warn,sagaflow_participants=error".to_owned(),
        })?
    };
    if args.orders == 0 || args.concurrency == 0 || args.replicas == 0 {
        anyhow::bail!("--orders, --concurrency and --replicas must be at least 1");
    }
    if !(args.database_url.starts_with("postgres://") || args.database_url.starts_with("postgresql://")) {
        anyhow::bail!("--database-url must name a PostgreSQL database (postgres://...)");
    }
    let options = BenchOptions {
        database_url: args.database_url,
        orders: args.orders,
        warmup: args.warmup,
        concurrency: args.concurrency,
        participants: args.participants,
        path: args.path,
        replicas: args.replicas,
        allow_existing_data: args.allow_existing_data,
        create_database: args.create_database,
        stats_wait: args.stats_wait,
        preload_completed: args.preload_completed,
        keep_data: args.keep_data,
    };
    let figures = runtime.block_on(bench::run(options));
    telemetry.shutdown();
    let figures = figures?;
    match args.output {
        Output::Human => println!("{}", figures.line()),
        Output::Json => println!("{}", serde_json::to_string(&figures)?),
    }
    if figures.unexpected > 0 {
        eprintln!("{} sagas did not end {:?} as the path expects", figures.unexpected, figures.path);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
