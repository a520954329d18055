//! The `sagaflow` command line: argument parsing and dispatch to one module per command.

pub mod actions;
pub mod bench;
pub mod chaos;
pub mod client;
pub mod definitions;
pub mod demo;
pub mod executions;
pub mod health;
pub mod replay;
pub mod serve;
pub mod stuck;
mod test;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Sagaflow: a durable saga orchestrator speaking the Amazon States Language.
#[derive(Debug, Parser)]
#[command(name = "sagaflow", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a batch of orders through the whole system in one process, then check every
    /// invariant (exit 0 only if they all hold).
    Demo(demo::DemoArgs),
    /// Start the whole system in one process and leave it running for experiments.
    Dev(demo::DevArgs),
    /// Check saga definitions (*.asl.json) and report every problem with its position.
    Validate {
        /// Definition files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        /// Also check Parameters field names against this participant's message types
        /// (NAME=URL, from its gRPC reflection; repeat for each participant).
        #[arg(long = "participant", value_delimiter = ',')]
        participants: Vec<String>,
    },
    /// Run definition test cases in memory, with stubbed tasks and a virtual clock.
    Test {
        /// Case files, or folders searched recursively for *.json cases.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        /// Print every case, not only failures.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Run the orchestrator: the gRPC API and the engine, on PostgreSQL (replicas) or SQLite.
    Serve(serve::ServeArgs),
    /// Register, list and print saga definitions on the server.
    Definitions(definitions::DefinitionsArgs),
    /// Start an execution of a registered definition.
    Start(client::StartArgs),
    /// List executions, newest first (one page; filter by status, definition, start time).
    List(executions::ListArgs),
    /// Show an execution: summary, saga ledger and a timeline with durations and retries.
    Show(executions::ShowArgs),
    /// Print every history event of an execution (--follow: until it ends).
    History(executions::HistoryArgs),
    /// Print an execution, its definition and its history as one JSON document (for `replay --file`).
    Export(executions::ShowArgs),
    /// Re-evaluate a recorded history offline; show where a new definition would diverge.
    Replay(replay::ReplayArgs),
    /// Start a new execution with the same definition (latest version) and input.
    Rerun(actions::ActArgs),
    /// Resume a FAILED execution from the state that failed.
    Redrive(actions::ActArgs),
    /// Start a new execution that keeps an execution's history before a top-level state and
    /// runs on from there.
    Fork(actions::ForkArgs),
    /// Stop a running execution and compensate what it completed (it ends CANCELLED).
    Cancel(actions::StopArgs),
    /// Stop an execution without compensating (it ends TERMINATED).
    Terminate(actions::StopArgs),
    /// List executions stuck in compensation; `retry`, `skip` or `resolve` them.
    Stuck(stuck::StuckArgs),
    /// Inject faults into a participant (errors, latency, applied-then-failed calls) through its Chaos service.
    Chaos(chaos::ChaosArgs),
    /// Measure the engine against a real PostgreSQL: sagas/s, latency, commits, WAL, memory.
    Bench(bench::BenchArgs),
    /// Ask a server (the orchestrator or a participant) for its gRPC health: exit 0 when
    /// SERVING, 1 otherwise, 2 when it cannot be reached (for container health checks).
    Health(health::HealthArgs),
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

/// Run a parsed command line; `Ok` carries the exit code for a command that ran.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files, output, participants } => validate::run(&files, output, &participants),
        Command::Test { paths, output, verbose } => test::run(&paths, output, verbose),
        Command::Demo(args) => demo::demo(args),
        Command::Dev(args) => demo::dev(args),
        Command::Serve(args) => serve::run(args),
        Command::Definitions(args) => block_on(definitions::run(args)),
        Command::Start(args) => block_on(client::start(args)),
        Command::List(args) => block_on(executions::list(args)),
        Command::Show(args) => block_on(executions::show(args)),
        Command::History(args) => block_on(executions::history(args)),
        Command::Export(args) => block_on(executions::export(args)),
        Command::Replay(args) => block_on(replay::run(args)),
        Command::Rerun(args) => block_on(actions::run(args, actions::Act::Rerun)),
        Command::Redrive(args) => block_on(actions::run(args, actions::Act::Redrive)),
        Command::Fork(args) => block_on(actions::fork(args)),
        Command::Cancel(args) => block_on(actions::run(args.act, actions::Act::Cancel(args.reason))),
        Command::Terminate(args) => block_on(actions::run(args.act, actions::Act::Terminate(args.reason))),
        Command::Stuck(args) => block_on(stuck::run(args)),
        Command::Chaos(args) => block_on(chaos::run(args)),
        Command::Bench(args) => bench::run(args),
        Command::Health(args) => block_on(health::run(args)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// Human logs on stderr; `RUST_LOG` overrides the level.
pub fn init_logging(default: tracing::Level) {
    init_logging_with(&format!("{default}"));
}

/// Human logs on stderr with these default directives (e.g. `warn,sagaflow_participants=error`);
/// `RUST_LOG` overrides them.
pub fn init_logging_with(directives: &str) {
    crate::telemetry::init_logging(crate::telemetry::LogFormat::Human, directives);
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
