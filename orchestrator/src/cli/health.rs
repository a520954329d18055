//! `sagaflow health`: one gRPC health check (`grpc.health.v1.Health/Check`) against the
//! orchestrator or a participant, for container health checks and readiness probes that have
//! no grpcurl or grpc_health_probe in their image. Exit 0 when SERVING, 1 when the server
//! answers anything else, 2 when it cannot be reached in time.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server to check: the orchestrator's API or a participant, e.g. http://127.0.0.1:50061.
    #[arg(long, env = "SAGAFLOW_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Check one service by its gRPC name (e.g. `sagaflow.v1.OrderService`, `payment.v1.Payment`)
    /// instead of the server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    /// How long connecting and the check may take together.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let what = if args.service.is_empty() { args.server.clone() } else { format!("{} {}", args.server, args.service) };
    let endpoint = Endpoint::from_shared(args.server.clone())
        .with_context(|| format!("{:?} is not a server address such as http://127.0.0.1:7070", args.server))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    // One deadline over connecting and asking: a health check that hangs is a failed one.
    let check = async {
        let channel = endpoint.connect().await.with_context(|| format!("cannot reach {}", args.server))?;
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: args.service.clone() }).await;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(args.timeout, check)
        .await
        .with_context(|| format!("{what}: no answer within {}", humantime::format_duration(args.timeout)))??;
    let status = match answer {
        Ok(response) => ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown),
        // The standard answer for a service name the server does not know.
        Err(status) if status.code() == tonic::Code::NotFound => ServingStatus::ServiceUnknown,
        Err(status) => anyhow::bail!("{what}: the health check failed: {} ({:?})", status.message(), status.code()),
    };
    println!("{what}: {}", status.as_str_name());
    Ok(if status == ServingStatus::Serving { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
