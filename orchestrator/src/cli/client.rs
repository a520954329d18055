//! Commands that talk to a running server: `start`, `show`, `history`.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::saga_service_client::SagaServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::Output;

/// Where the server is.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's gRPC address.
    #[arg(long, env = "SAGAFLOW_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    pub server: String,
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The definition's name (its latest version runs unless --definition-version is given).
    pub definition: String,
    /// The execution input, as JSON text; `@FILE` reads it from a file.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// A definition version (default: the latest).
    #[arg(long)]
    pub definition_version: Option<u32>,
    /// The execution id (a UUID); starting it again with the same input finds the same execution.
    #[arg(long)]
    pub id: Option<String>,
    /// At most one execution per key and definition.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait until the execution ends and show how.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// An execution id, or any unique prefix of one.
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn connect(server: &str) -> anyhow::Result<SagaServiceClient<Channel>> {
    let channel = Channel::from_shared(server.to_owned())
        .with_context(|| format!("{server:?} is not a server address such as http://127.0.0.1:7070"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach the server at {server} (is `sagaflow serve` running? set --server or SAGAFLOW_SERVER)"
            )
        })?;
    Ok(SagaServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// A server error, as a sentence.
fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

pub async fn start(args: StartArgs) -> anyhow::Result<std::process::ExitCode> {
    let input = match args.input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => args.input.clone(),
    };
    serde_json::from_str::<Value>(&input).context("--input is not valid JSON")?;
    let mut client = connect(&args.server.server).await?;
    let mut request = tonic::Request::new(pb::StartExecutionRequest {
        definition_name: args.definition,
        definition_version: args.definition_version.unwrap_or(0),
        input_json: input,
        execution_id: args.id.unwrap_or_default(),
        idempotency_key: args.idempotency_key.unwrap_or_default(),
        wait_for_completion: args.wait,
    });
    if args.wait {
        request.set_timeout(Duration::from_secs(600));
    }
    let response = client.start_execution(request).await.map_err(failed)?.into_inner();
    let execution = response.execution.context("the server returned no execution")?;
    match args.server.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&execution_json(&execution))?),
        Output::Human => {
            let verb = if response.created { "started" } else { "already started" };
            println!("{} {verb}: {}", execution.execution_id, execution.status);
            if args.wait {
                print_outcome(&execution);
            }
        }
    }
    Ok(exit_for(&execution.status, args.wait))
}

/// With --wait, a failed saga is a failed command.
fn exit_for(status: &str, waited: bool) -> std::process::ExitCode {
    if waited && status != "SUCCEEDED" { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS }
}

fn print_outcome(e: &pb::Execution) {
    if !e.output_json.is_empty() {
        println!("output: {}", pretty(&e.output_json));
    }
    if !e.error.is_empty() {
        println!("error:  {}", e.error);
    }
    if !e.cause.is_empty() {
        println!("cause:  {}", e.cause);
    }
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

fn parse_json(text: &str) -> Value {
    if text.is_empty() { Value::Null } else { serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())) }
}

fn time(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

pub fn execution_json(e: &pb::Execution) -> Value {
    json!({
        "executionId": e.execution_id,
        "definition": e.definition_name,
        "definitionVersion": e.definition_version,
        "status": e.status,
        "input": parse_json(&e.input_json),
        "output": parse_json(&e.output_json),
        "error": (!e.error.is_empty()).then_some(&e.error),
        "cause": (!e.cause.is_empty()).then_some(&e.cause),
        "startTime": time(&e.start_time).map(|t| t.to_rfc3339()),
        "stopTime": time(&e.stop_time).map(|t| t.to_rfc3339()),
        "idempotencyKey": (!e.idempotency_key.is_empty()).then_some(&e.idempotency_key),
        "redriveCount": e.redrive_count,
        "lastEventId": e.last_event_id,
    })
}

fn event_json(e: &pb::HistoryEvent) -> Value {
    json!({
        "id": e.id,
        "timestamp": time(&e.timestamp).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "type": e.r#type,
        "state": (!e.state.is_empty()).then_some(&e.state),
        "details": parse_json(&e.details_json),
        "cause": parse_json(&e.cause_json),
    })
}

async fn all_history(client: &mut SagaServiceClient<Channel>, id: &str) -> anyhow::Result<Vec<pb::HistoryEvent>> {
    let mut events = Vec::new();
    loop {
        let after = events.last().map(|e: &pb::HistoryEvent| e.id).unwrap_or(0);
        let page = client
            .get_execution_history(pb::GetExecutionHistoryRequest {
                execution_id: id.to_owned(),
                after_event_id: after,
                page_size: 1000,
            })
            .await
            .map_err(failed)?
            .into_inner();
        events.extend(page.events);
        if !page.has_more {
            return Ok(events);
        }
    }
}

pub async fn show(args: ShowArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut client = connect(&args.server.server).await?;
    let described = client
        .describe_execution(pb::DescribeExecutionRequest { execution_id: args.id.clone() })
        .await
        .map_err(failed)?
        .into_inner();
    let execution = described.execution.clone().context("the server returned no execution")?;
    let events = all_history(&mut client, &execution.execution_id).await?;
    match args.server.output {
        Output::Json => {
            let compensations: Vec<Value> = described
                .compensations
                .iter()
                .map(|c| {
                    json!({
                        "state": c.state, "scope": c.scope, "forwardKey": c.forward_key, "status": c.status,
                        "attempts": c.attempts, "lastError": (!c.last_error.is_empty()).then_some(&c.last_error),
                        "lastCause": (!c.last_cause.is_empty()).then_some(&c.last_cause),
                        "outcomeUnknown": c.outcome_unknown,
                    })
                })
                .collect();
            let mut value = execution_json(&execution);
            value["compensations"] = Value::Array(compensations);
            value["events"] = Value::Array(events.iter().map(event_json).collect());
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Human => {
            println!("execution  {}", execution.execution_id);
            println!("definition {} v{}", execution.definition_name, execution.definition_version);
            println!("status     {}", execution.status);
            if let (Some(start), stop) = (time(&execution.start_time), time(&execution.stop_time)) {
                let end = stop.unwrap_or_else(Utc::now);
                println!(
                    "started    {}  ({} {})",
                    start.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                    human_duration(end - start),
                    if stop.is_some() { "total" } else { "so far" }
                );
            }
            println!("input      {}", pretty(&execution.input_json).replace('\n', "\n           "));
            print_outcome(&execution);
            if !described.compensations.is_empty() {
                println!("\ncompensations (run newest first):");
                for c in &described.compensations {
                    let unknown = if c.outcome_unknown { "  (forward outcome unknown)" } else { "" };
                    println!("  {:<10} {:<28} attempts {}{unknown}", c.status, c.scope, c.attempts);
                    if !c.last_error.is_empty() && c.status != "SUCCEEDED" {
                        println!("             last error {}: {}", c.last_error, c.last_cause);
                    }
                }
            }
            println!("\ntimeline:");
            print_timeline(&events);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn human_duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000) as u64)).to_string()
    }
}

fn print_timeline(events: &[pb::HistoryEvent]) {
    let start = events.first().and_then(|e| time(&e.timestamp));
    for e in events {
        let offset = match (start, time(&e.timestamp)) {
            (Some(s), Some(t)) => format!("+{}", human_duration(t - s)),
            _ => String::new(),
        };
        let details = parse_json(&e.details_json);
        let mut note = String::new();
        for key in ["error", "attempt", "delayMs", "reason"] {
            if let Some(v) = details.get(key).filter(|v| !v.is_null()) {
                note.push_str(&format!(" {key}={}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())));
            }
        }
        println!("  {:>5} {:>10}  {:<28} {}{note}", e.id, offset, e.r#type, e.state);
    }
}

pub async fn history(args: ShowArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut client = connect(&args.server.server).await?;
    let described = client
        .describe_execution(pb::DescribeExecutionRequest { execution_id: args.id.clone() })
        .await
        .map_err(failed)?
        .into_inner();
    if described.execution_id.is_empty() {
        bail!("no execution {}", args.id);
    }
    let events = all_history(&mut client, &described.execution_id).await?;
    match args.server.output {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(&Value::Array(events.iter().map(event_json).collect()))?)
        }
        Output::Human => {
            for e in &events {
                let t = time(&e.timestamp).map(|t| t.format("%H:%M:%S%.3f").to_string()).unwrap_or_default();
                println!("{:>5} {t} {:<28} {:<24} {}", e.id, e.r#type, e.state, e.details_json);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
