//! The `sagaflow` command line: argument parsing and dispatch to one module per command.

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
        Command::Validate { files, output } => validate::run(&files, output),
        Command::Test {
            paths,
            output,
            verbose,
        } => test::run(&paths, output, verbose),
    }
}
