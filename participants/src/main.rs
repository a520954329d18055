//! `sagaflow-participant`: parses the command line, sets up logging and signals, runs the
//! participant, and maps the outcome to an exit code (0 clean shutdown, 2 failure).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use sagaflow_participants::config::Cli;
use sagaflow_participants::kit::telemetry::{self, TelemetryOptions};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let log_format = cli.log_format;
    let config = cli.into_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // The OTLP exporter's channel lives on the runtime, so telemetry starts inside it.
    let telemetry = runtime.block_on(async {
        telemetry::init(&TelemetryOptions {
            service_name: "sagaflow-participant",
            log_format,
            directives: "info".to_owned(),
        })
    })?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(shutdown.clone()));
        let result = sagaflow_participants::run(config, shutdown.clone()).await.context("the participant failed");
        shutdown.cancel();
        signals.abort();
        result
    });
    telemetry.shutdown();
    result
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only Ctrl-C stops the participant");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = shutdown.cancelled() => {}
    }
    shutdown.cancel();
}
