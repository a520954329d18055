//! The `sagaflow` command line: argument parsing and dispatch to one module per command.

pub mod client;
pub mod serve;
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
    /// Run the orchestrator: the gRPC API and the engine, on PostgreSQL.
    Serve(serve::ServeArgs),
    /// Start an execution of a registered definition.
    Start(client::StartArgs),
    /// Show an execution: status, input, output or error, compensations and a timeline.
    Show(client::ShowArgs),
    /// Print every history event of an execution.
    History(client::ShowArgs),
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
        Command::Serve(args) => serve::run(args),
        Command::Start(args) => block_on(client::start(args)),
        Command::Show(args) => block_on(client::show(args)),
        Command::History(args) => block_on(client::history(args)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(future)
}

/// Human logs on stderr; `RUST_LOG` overrides the level.
pub fn init_logging(default: tracing::Level) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default},h2=warn,tower=warn,hyper=warn,sqlx=warn"))
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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
