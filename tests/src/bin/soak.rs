//! `soak`: steady load with periodic faults for a while, printing throughput, resident memory
//! and database size over time, then the fault suite's checks. Needs the workspace's binaries
//! built in the same profile and PostgreSQL server binaries; it runs its own PostgreSQL.
//! Exits 0 when every check holds, 1 on any violation.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sagaflow_e2e::soak::{self, SoakOptions};

/// Steady load with a fault every so often; throughput, memory and database growth over time.
#[derive(Debug, Parser)]
#[command(name = "soak")]
struct Args {
    /// How long to keep the load on.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// At most this many orders started per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Orchestrator replicas (replica 0 is never killed; the others take the kills).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Each replica's lease.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// A fault of a random kind this often ("0s": none).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    fault_every: Duration,
    /// A sample row this often.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = SoakOptions {
        duration: args.duration,
        concurrency: args.concurrency.max(1),
        rate: args.rate,
        replicas: args.replicas.max(1),
        lease: args.lease,
        fault_every: args.fault_every,
        sample_every: args.sample_every.max(Duration::from_secs(1)),
        seed: args.seed,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(soak::run(options)) {
        Ok(report) => {
            println!("{}", report.render());
            if report.violations() > 0 {
                println!("FAILED: {} violation(s)", report.violations());
                ExitCode::from(1)
            } else {
                println!("every check holds");
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
