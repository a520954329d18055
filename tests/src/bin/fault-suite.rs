//! `fault-suite`: the fault suite as one command. Needs the workspace's binaries built in the
//! same profile (`cargo build --release --workspace --bins`) and PostgreSQL server binaries
//! (`initdb`, `pg_ctl`); it runs its own PostgreSQL. Exits 0 when every check holds, 1 on any
//! violation, 2 when fewer faults were injected than asked for.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sagaflow_e2e::fault_suite::faults::FaultPlan;
use sagaflow_e2e::fault_suite::{self, SuiteOptions};

/// Orders against several `sagaflow serve` replicas while faults of every kind are injected;
/// then every invariant is checked and a table printed.
#[derive(Debug, Parser)]
#[command(name = "fault-suite")]
struct Args {
    /// Orders to place.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Orchestrator replicas SIGKILLed (and restarted).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// PostgreSQL stops and restarts (alternately clean and immediate).
    #[arg(long, default_value_t = 2)]
    pg_restarts: usize,
    /// Participant faults: kills, slow answers, errors, timeouts after applying, lost answers
    /// (duplicate deliveries), answers past the deadline.
    #[arg(long, default_value_t = 20)]
    participant_faults: usize,
    /// Network faults through the proxies: delays, blackholes, cuts.
    #[arg(long, default_value_t = 10)]
    network_faults: usize,
    /// Orchestrator replicas.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Each replica's lease.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// How long orders arrive and faults come [default: 3 s per fault, at least 20 s].
    #[arg(long, value_parser = humantime::parse_duration)]
    window: Option<Duration>,
    /// How long the sagas may take to settle after the last fault.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    settle_limit: Duration,
    /// Share of the orders that arrive in bursts just before PostgreSQL restarts and a kill.
    #[arg(long, default_value_t = 0.4)]
    burst_share: f64,
    /// Seed of the order mix and the fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = SuiteOptions {
        orders: args.orders,
        plan: FaultPlan {
            kills: args.kills,
            pg_restarts: args.pg_restarts,
            participant_faults: args.participant_faults,
            network_faults: args.network_faults,
        },
        replicas: args.replicas.max(1),
        lease: args.lease,
        window: args.window,
        settle_limit: args.settle_limit,
        seed: args.seed,
        burst_share: args.burst_share,
        progress: true,
        ..SuiteOptions::default()
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(fault_suite::run(options)) {
        Ok(report) => {
            println!("{}", report.render());
            let shortfalls = report.shortfalls();
            if report.violations() > 0 {
                println!("FAILED: {} violation(s); logs kept in {}", report.violations(), report.log_dir.display());
                ExitCode::from(1)
            } else if !shortfalls.is_empty() {
                println!("INCOMPLETE: {}", shortfalls.join("; "));
                ExitCode::from(2)
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
