//! What every command that talks to a running server shares: the `--server`/`--output`
//! arguments, the connection (TLS, bearer token), the masking of configured fields in what is
//! printed, server errors as sentences, the execution filter of bulk and listing commands,
//! and the printing helpers (JSON shapes, tables, colours, durations).
//! `start` lives here too: it is the one command that only creates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use comfy_table::{Cell, Color, ContentArrangement, Table, TableComponent, presets};
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::saga_service_client::SagaServiceClient;
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::Output;
use crate::security::auth::BearerToken;
use crate::security::redact::{DEFAULT_PATHS, Redactor, Secrets};
use crate::security::redacted_api::MessageMasker;
use crate::security::tls::ClientTlsFiles;
// `show` lives in `executions`; the old path stays for its callers (the demo).
pub use super::executions::{ShowArgs, show};

/// The client every command uses: the API, with the bearer token on every call, and the
/// masking of what the command prints. It derefs to the generated client, so
/// `client.describe_execution(...)` is the raw answer (`rerun` needs the real input); the
/// shared fetchers below ([`describe`], [`all_history`]) mask.
#[derive(Debug, Clone)]
pub struct Client {
    api: SagaServiceClient<InterceptedService<Channel, BearerToken>>,
    pub masker: MessageMasker,
}

impl std::ops::Deref for Client {
    type Target = SagaServiceClient<InterceptedService<Channel, BearerToken>>;

    fn deref(&self) -> &Self::Target {
        &self.api
    }
}

impl std::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.api
    }
}

/// Where the server is, and how to print.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's gRPC address: http://HOST:PORT, or https://HOST:PORT over TLS (with --ca-cert).
    #[arg(long, env = "SAGAFLOW_SERVER", default_value = "http://127.0.0.1:7070", global = true)]
    pub server: String,
    #[arg(long, value_enum, default_value_t = Output::Human, global = true)]
    pub output: Output,
    #[command(flatten)]
    pub security: ClientSecurityArgs,
}

/// How to reach a server that uses TLS or tokens, and what to mask in what is printed.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientSecurityArgs {
    /// The CA certificate (PEM) that signed an https:// server's certificate.
    #[arg(long, env = "SAGAFLOW_CA_CERT", value_name = "PEM", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// This client's certificate (PEM), for a server that requires one (with --client-key).
    #[arg(long, env = "SAGAFLOW_CLIENT_CERT", value_name = "PEM", global = true)]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(long, env = "SAGAFLOW_CLIENT_KEY", value_name = "PEM", global = true)]
    pub client_key: Option<PathBuf>,
    /// The bearer token for a server that requires one (prefer SAGAFLOW_TOKEN or --token-file:
    /// a flag is visible to other users in the process list).
    #[arg(long, env = "SAGAFLOW_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the bearer token (its first line that is not a # comment).
    #[arg(long, env = "SAGAFLOW_TOKEN_FILE", value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Mask the values at these JSON paths in what is printed (repeat, or comma-separate);
    /// `none` prints everything [default: $..paymentToken, $..payment_token, $..cardNumber,
    /// $..card_number, $..cvv, $..cvc].
    #[arg(long = "redact", env = "SAGAFLOW_REDACT", value_name = "PATH", value_delimiter = ',', global = true)]
    pub redact: Vec<String>,
}

impl ClientSecurityArgs {
    /// The paths to mask: the given ones, [`DEFAULT_PATHS`] when none are, nothing for `none`.
    pub fn redactor(&self) -> anyhow::Result<Redactor> {
        let given: Vec<&str> = self.redact.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
        Ok(match given.as_slice() {
            [] => Redactor::new(DEFAULT_PATHS)?,
            ["none"] => Redactor::none(),
            paths => Redactor::new(paths)?,
        })
    }

    /// The token to send, from --token (SAGAFLOW_TOKEN) or --token-file.
    pub fn bearer(&self) -> anyhow::Result<BearerToken> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                bail!("give --token (SAGAFLOW_TOKEN) or --token-file (SAGAFLOW_TOKEN_FILE), not both")
            }
            (Some(token), None) => Ok(BearerToken::new(Some(token), "--token")?),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading the token file {}", file.display()))?;
                let token = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
                let token = token.with_context(|| format!("the token file {} holds no token", file.display()))?;
                Ok(BearerToken::new(Some(token), &file.display().to_string())?)
            }
            (None, None) => Ok(BearerToken::default()),
        }
    }
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

/// Which executions a listing or bulk command covers.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only executions with this status (repeat for several), e.g. FAILED, COMPENSATION_STUCK.
    #[arg(long = "status", value_name = "STATUS")]
    pub statuses: Vec<String>,
    /// Only executions of this definition.
    #[arg(long, value_name = "NAME")]
    pub definition: Option<String>,
    /// Only executions started since then: a duration back from now (`90s`, `1h`, `2d`) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION_OR_TIMESTAMP", value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.definition.is_none() && self.since.is_none()
    }

    pub fn request(&self, page_size: u32, page_token: String) -> pb::ListExecutionsRequest {
        pb::ListExecutionsRequest {
            statuses: self.statuses.iter().map(|s| s.trim().to_ascii_uppercase().replace('-', "_")).collect(),
            definition_name: self.definition.clone().unwrap_or_default(),
            started_after: self.since.map(timestamp),
            started_before: None,
            id_prefix: String::new(),
            page_size,
            page_token,
        }
    }
}

/// `--since`: `1h`, `90m`, `2d 3h` (back from now) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    parse_since_at(text, Utc::now())
}

pub fn parse_since_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(text).map_err(|_| {
        format!(
            "{text:?} is neither a duration (such as 30m, 1h, 2d) nor an RFC 3339 time (such as 2024-05-01T12:00:00Z)"
        )
    })?;
    let d = TimeDelta::from_std(d).map_err(|_| format!("{text:?} is too long ago"))?;
    now.checked_sub_signed(d).ok_or_else(|| format!("{text:?} is too long ago"))
}

pub async fn connect(args: &ServerArgs) -> anyhow::Result<Client> {
    let server = &args.server;
    let security = &args.security;
    let masker = MessageMasker::new(security.redactor()?);
    let bearer = security.bearer()?;
    let mut endpoint = Channel::from_shared(server.to_owned())
        .with_context(|| format!("{server:?} is not a server address such as http://127.0.0.1:7070"))?
        .connect_timeout(Duration::from_secs(5));
    // The TLS files are for https:// servers; with http:// they are left unused, so a
    // SAGAFLOW_CA_CERT kept in the environment does not get in the way of a local server.
    if server.starts_with("https://") {
        let names = ["--ca-cert", "--client-cert", "--client-key"];
        let (ca, cert, key) = (&security.ca_cert, &security.client_cert, &security.client_key);
        let files = ClientTlsFiles::from_settings(ca.as_deref(), cert.as_deref(), key.as_deref(), names)?
            .with_context(|| {
                format!(
                    "{server} is https://: give --ca-cert (or SAGAFLOW_CA_CERT), the CA that signed its certificate"
                )
            })?;
        endpoint = endpoint.tls_config(files.load()?).context("setting up TLS")?;
    }
    let channel = endpoint.connect().await.with_context(|| {
        format!(
            "cannot reach the server at {server} (is `sagaflow serve` running? set --server or SAGAFLOW_SERVER; \
             a server with TLS is reached at https://HOST:PORT with --ca-cert)"
        )
    })?;
    let api = SagaServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(64 * 1024 * 1024);
    Ok(Client { api, masker })
}

/// A server error, as a sentence (with every field violation of an InvalidArgument).
pub fn failed(status: tonic::Status) -> anyhow::Error {
    let mut text = format!("{} ({:?})", status.message(), status.code());
    // What a plaintext client sees from a TLS server: the connection breaks mid-handshake.
    if status.message().contains("h2 protocol error") {
        text.push_str("\n  the connection broke: if the server uses TLS, reach it at https://HOST:PORT with --ca-cert");
    }
    for (field, description) in violations(&status) {
        if !text.contains(&description) {
            text.push_str(&format!("\n  {field}: {description}"));
        }
    }
    anyhow::anyhow!(text)
}

/// The `(field, description)` pairs of an InvalidArgument's BadRequest details.
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
        .unwrap_or_default()
}

pub async fn start(args: StartArgs) -> anyhow::Result<ExitCode> {
    let input = match args.input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => args.input.clone(),
    };
    serde_json::from_str::<Value>(&input).context("--input is not valid JSON")?;
    let mut client = connect(&args.server).await?;
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
    let mut execution = response.execution.context("the server returned no execution")?;
    client.masker.execution(&mut execution, &Secrets::default());
    match args.server.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&execution_json(&execution))?),
        Output::Human => {
            let verb = if response.created { "started" } else { "already started" };
            println!("{} {verb}: {}", execution.execution_id, paint_status(&execution.status));
            if args.wait {
                print_outcome(&execution);
            }
        }
    }
    Ok(exit_for(&execution.status, args.wait))
}

/// With --wait, a failed saga is a failed command.
fn exit_for(status: &str, waited: bool) -> ExitCode {
    if waited && status != "SUCCEEDED" { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

pub fn print_outcome(e: &pb::Execution) {
    if !e.output_json.is_empty() {
        println!("output     {}", indent(&pretty(&e.output_json), 11));
    }
    if !e.error.is_empty() {
        println!("error      {}", paint(&e.error, Color::Red));
    }
    if !e.cause.is_empty() {
        println!("cause      {}", indent(&e.cause, 11));
    }
}

pub fn indent(text: &str, by: usize) -> String {
    text.replace('\n', &format!("\n{}", " ".repeat(by)))
}

pub fn pretty(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}

pub fn parse_json(text: &str) -> Value {
    if text.is_empty() { Value::Null } else { serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())) }
}

pub fn time(t: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
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

/// A history event as JSON; `cause` is the serde JSON of the interpreter `Event` it recorded.
pub fn event_json(e: &pb::HistoryEvent) -> Value {
    json!({
        "id": e.id,
        "timestamp": time(&e.timestamp).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "type": e.r#type,
        "state": (!e.state.is_empty()).then_some(&e.state),
        "details": parse_json(&e.details_json),
        "cause": parse_json(&e.cause_json),
    })
}

pub fn compensation_json(c: &pb::CompensationStep) -> Value {
    json!({
        "state": c.state, "scope": c.scope, "forwardKey": c.forward_key, "status": c.status,
        "attempts": c.attempts, "lastError": (!c.last_error.is_empty()).then_some(&c.last_error),
        "lastCause": (!c.last_cause.is_empty()).then_some(&c.last_cause),
        "outcomeUnknown": c.outcome_unknown,
    })
}

/// DescribeExecution by id or unique prefix, masked for printing.
pub async fn describe(client: &mut Client, id: &str) -> anyhow::Result<pb::DescribeExecutionResponse> {
    let mut described = client
        .describe_execution(pb::DescribeExecutionRequest { execution_id: id.to_owned() })
        .await
        .map_err(failed)?
        .into_inner();
    if described.execution_id.is_empty() || described.execution.is_none() {
        bail!("no execution {id}");
    }
    client.masker.described(&mut described, &Secrets::default());
    Ok(described)
}

/// Every history event of an execution, masked for printing (the first event holds the
/// input, so every secret it hid is scrubbed from the later ones).
pub async fn all_history(client: &mut Client, id: &str) -> anyhow::Result<Vec<pb::HistoryEvent>> {
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
            client.masker.history(&mut events, &Secrets::default());
            return Ok(events);
        }
    }
}

/// Every execution matching `filter`, newest first, across all pages.
pub async fn all_matching(client: &mut Client, filter: &Filter) -> anyhow::Result<Vec<pb::Execution>> {
    let mut executions = Vec::new();
    let mut token = String::new();
    loop {
        let page = client.list_executions(filter.request(1000, token)).await.map_err(failed)?.into_inner();
        executions.extend(page.executions);
        if page.next_page_token.is_empty() {
            return Ok(executions);
        }
        token = page.next_page_token;
    }
}

// ------------------------------------------------------------------ printing

/// Colours only on a terminal, and never with NO_COLOR set.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table that fits the terminal, styled only when colours are on.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // No borders; one rule under the header (as `kubectl get`, with a line).
    t.load_preset(presets::NOTHING)
        .set_style(TableComponent::HeaderLines, '─')
        .set_style(TableComponent::MiddleHeaderIntersections, '─')
        .set_content_arrangement(ContentArrangement::Dynamic);
    if !colour() {
        t.force_no_tty();
    }
    t.set_header(header.iter().map(|h| Cell::new(h).add_attribute(comfy_table::Attribute::Bold)));
    t
}

pub fn status_colour(status: &str) -> Color {
    match status {
        "SUCCEEDED" | "done" | "undone" | "succeeded" | "resolved" => Color::Green,
        "FAILED" | "COMPENSATION_STUCK" | "STUCK" | "stuck" | "failed" => Color::Red,
        "COMPENSATED" | "skipped" | "unknown" => Color::Yellow,
        "RUNNING" | "COMPENSATING" | "still owed" => Color::Cyan,
        _ => Color::DarkGrey,
    }
}

pub fn status_cell(status: &str) -> Cell {
    Cell::new(status).fg(status_colour(status))
}

/// `text` in ANSI colour when colours are on.
pub fn paint(text: &str, colour_of: Color) -> String {
    if !colour() {
        return text.to_owned();
    }
    let code = match colour_of {
        Color::Red => "31",
        Color::Green => "32",
        Color::Yellow => "33",
        Color::Blue => "34",
        Color::Magenta => "35",
        Color::Cyan => "36",
        Color::DarkGrey => "90",
        _ => "1",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

pub fn paint_status(status: &str) -> String {
    paint(status, status_colour(status))
}

/// The first 13 characters of an id (`0190b4d2-1b7e`): enough to tell executions apart.
pub fn short_id(id: &str) -> &str {
    id.get(..13).unwrap_or(id)
}

/// A duration in the largest sensible units: `850ms`, `2.4s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn human_duration(d: TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    let s = ms / 1000;
    match ms {
        _ if ms < 1000 => format!("{ms}ms"),
        _ if ms < 10_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ if s < 60 => format!("{s}s"),
        _ if s < 3600 => two(s / 60, "m", s % 60, "s"),
        _ if s < 86_400 => two(s / 3600, "h", s % 3600 / 60, "m"),
        _ => two(s / 86_400, "d", s % 86_400 / 3600, "h"),
    }
}

fn two(a: i64, ua: &str, b: i64, ub: &str) -> String {
    if b == 0 { format!("{a}{ua}") } else { format!("{a}{ua} {b}{ub}") }
}

/// How long ago `then` was: `12s ago`, `3m ago`, `2h ago`, `5d ago`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds();
    match s {
        _ if s < 0 => "just now".into(),
        _ if s < 60 => format!("{s}s ago"),
        _ if s < 3600 => format!("{}m ago", s / 60),
        _ if s < 86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// Start to stop (or to now, while it runs).
pub fn run_time(e: &pb::Execution, now: DateTime<Utc>) -> Option<TimeDelta> {
    let start = time(&e.start_time)?;
    Some(time(&e.stop_time).unwrap_or(now) - start)
}

/// Cut `text` to `max` characters (by char), with an ellipsis.
pub fn clip(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or_default();
    if first_line.chars().count() <= max && first_line.len() == text.len() {
        return text.to_owned();
    }
    let cut: String = first_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_human_units() {
        let ms = TimeDelta::milliseconds;
        assert_eq!(human_duration(ms(850)), "850ms");
        assert_eq!(human_duration(ms(2_345)), "2.3s");
        assert_eq!(human_duration(ms(42_000)), "42s");
        assert_eq!(human_duration(ms(192_000)), "3m 12s");
        assert_eq!(human_duration(ms(180_000)), "3m");
        assert_eq!(human_duration(ms(7_500_000)), "2h 5m");
        assert_eq!(human_duration(ms(273_600_000)), "3d 4h");
        assert_eq!(human_duration(ms(-5)), "0ms");
    }

    #[test]
    fn ages_are_relative() {
        let now = Utc::now();
        assert_eq!(ago(now - TimeDelta::seconds(12), now), "12s ago");
        assert_eq!(ago(now - TimeDelta::seconds(200), now), "3m ago");
        assert_eq!(ago(now - TimeDelta::hours(5), now), "5h ago");
        assert_eq!(ago(now - TimeDelta::days(3), now), "3d ago");
        assert_eq!(ago(now + TimeDelta::seconds(3), now), "just now");
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").expect("time").with_timezone(&Utc);
        assert_eq!(parse_since_at("1h", now).expect("1h").to_rfc3339(), "2024-05-01T11:00:00+00:00");
        assert_eq!(parse_since_at("2d", now).expect("2d").to_rfc3339(), "2024-04-29T12:00:00+00:00");
        assert_eq!(parse_since_at("90m", now).expect("90m").to_rfc3339(), "2024-05-01T10:30:00+00:00");
        assert_eq!(
            parse_since_at("2024-04-30T08:00:00+02:00", now).expect("rfc3339").to_rfc3339(),
            "2024-04-30T06:00:00+00:00"
        );
        assert!(parse_since_at("yesterday", now).is_err());
    }

    #[test]
    fn ids_and_texts_are_cut_to_fit() {
        assert_eq!(short_id("0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d"), "0190b4d2-1b7e");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a rather long error message", 10), "a rather …");
        assert_eq!(clip("two\nlines", 10), "two…");
    }

    #[test]
    fn statuses_are_normalised_for_the_server() {
        let f = Filter { statuses: vec!["failed".into(), "compensation-stuck".into()], ..Filter::default() };
        assert_eq!(f.request(10, String::new()).statuses, ["FAILED", "COMPENSATION_STUCK"]);
        assert!(!f.is_empty());
        assert!(Filter::default().is_empty());
    }
}
