//! The `sagaflow` command: parses arguments, runs the command, maps the outcome to an exit
//! code (0 success, 1 the command found problems, 2 it could not run).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sagaflow::cli::Cli::parse();
    match sagaflow::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
