//! The `sagaflow` command: parses arguments, runs the command, maps the outcome to an exit
//! code (0 success, 1 the command found problems, 2 it could not run).

use std::process::ExitCode;

use clap::Parser;

/// The engine allocates and frees many small JSON values per step (snapshots, payloads):
/// jemalloc is as fast at that as mimalloc was, and unlike it hands freed memory back, so
/// a long-running server's resident memory stays flat (decision 0021, docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = sagaflow::cli::Cli::parse();
    match sagaflow::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `sagaflow history ID | head` closes the pipe early: `println!` then panics with a broken
/// pipe. That is the reader's choice, not an error: end quietly, as Unix tools do.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
