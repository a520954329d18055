//! Inspecting executions: `list`, `show` (summary, saga ledger, per-state timeline),
//! `history [--follow]` and `export` (a self-contained document `replay --file` reads).

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Color};
use sagaflow_language::model::{StateKind, StateMachine};
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use super::Output;
use super::client::{
    self, Client, Filter, ServerArgs, ago, all_history, clip, compensation_json, connect, describe, event_json,
    execution_json, failed, human_duration, indent, paint, paint_status, parse_json, pretty, print_json, print_outcome,
    run_time, short_id, status_cell, table, time,
};
use super::definitions;
use crate::security::redact::Secrets;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// At most this many executions (one page).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Continue from a previous page (the token it printed).
    #[arg(long)]
    pub page_token: Option<String>,
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

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// An execution id, or any unique prefix of one.
    pub id: String,
    /// Keep printing new events until the execution ends.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let mut page = client
        .list_executions(args.filter.request(args.limit.max(1), args.page_token.unwrap_or_default()))
        .await
        .map_err(failed)?
        .into_inner();
    client.masker.executions(page.executions.iter_mut());
    match args.server.output {
        Output::Json => print_json(&json!({
            "executions": page.executions.iter().map(execution_json).collect::<Vec<_>>(),
            "nextPageToken": (!page.next_page_token.is_empty()).then_some(&page.next_page_token),
        }))?,
        Output::Human => {
            if page.executions.is_empty() {
                println!("no executions match");
                return Ok(ExitCode::SUCCESS);
            }
            let now = Utc::now();
            let mut t = table(&["id", "definition", "status", "started", "duration", "error"]);
            for e in &page.executions {
                t.add_row(vec![
                    Cell::new(short_id(&e.execution_id)),
                    Cell::new(format!("{}@{}", e.definition_name, e.definition_version)),
                    status_cell(&e.status),
                    Cell::new(time(&e.start_time).map(|s| ago(s, now)).unwrap_or_default()),
                    Cell::new(run_time(e, now).map(human_duration).unwrap_or_default())
                        .set_alignment(CellAlignment::Right),
                    Cell::new(clip(&e.error, 40)),
                ]);
            }
            println!("{t}");
            if !page.next_page_token.is_empty() {
                println!("more: --page-token {}", page.next_page_token);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------ show

/// One forward step that has a `Compensate`, and what became of its compensation.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub scope: String,
    pub forward_key: String,
    /// `succeeded`, `failed` or `unknown` (the call may have been applied).
    pub forward: &'static str,
    /// `done` (nothing to undo), `undone`, `still owed`, `stuck`, `skipped`, `resolved`, `none owed`
    /// (the forward call failed), `not compensated` (terminated).
    pub compensation: &'static str,
    pub attempts: u32,
    pub last_error: String,
}

/// One visit of a state (or one compensation) in the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub scope: String,
    /// `Task`, `Pass`, ... or `Compensate`.
    pub kind: String,
    pub entered_ms: i64,
    pub exited_ms: Option<i64>,
    /// The last event of this span (its end when it never exited).
    pub last_ms: i64,
    pub attempts: u32,
    /// Backoff delays between attempts, from `*RetryScheduled` `delayMs`.
    pub backoffs_ms: Vec<i64>,
    pub outcome: String,
}

fn details(e: &pb::HistoryEvent) -> Value {
    parse_json(&e.details_json)
}

fn ms(e: &pb::HistoryEvent) -> i64 {
    time(&e.timestamp).map(|t| t.timestamp_millis()).unwrap_or(0)
}

fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| if v.is_null() { String::new() } else { v.to_string() })
}

/// The states of a definition (at any depth) that have a `Compensate`.
pub fn compensable_states(content: &str) -> Option<BTreeSet<String>> {
    fn walk(m: &StateMachine, out: &mut BTreeSet<String>) {
        for (name, state) in &m.states {
            match &state.kind {
                StateKind::Task(t) if t.compensate.is_some() => {
                    out.insert(name.clone());
                }
                StateKind::Parallel(p) => p.branches.iter().for_each(|b| walk(b, out)),
                StateKind::Map(m) => walk(&m.processor, out),
                _ => {}
            }
        }
    }
    let compiled = sagaflow_language::compile(content).ok()?;
    let mut out = BTreeSet::new();
    walk(&compiled.definition.machine, &mut out);
    Some(out)
}

/// `Fanout#1[0].Charge` is a visit of `Charge`.
fn scope_is(scope: &str, name: &str) -> bool {
    scope == name || scope.strip_suffix(name).is_some_and(|head| head.ends_with("]."))
}

/// The saga ledger: forward steps with a `Compensate` (or, without the definition, those in
/// the rollback plan), in the order they were first scheduled.
pub fn ledger(
    events: &[pb::HistoryEvent],
    compensable: Option<&BTreeSet<String>>,
    plan: &[pb::CompensationStep],
    status: &str,
) -> Vec<LedgerRow> {
    let mut call_key: HashMap<u64, String> = HashMap::new();
    let mut rows: Vec<LedgerRow> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in events {
        let d = details(e);
        match e.r#type.as_str() {
            "TaskScheduled" => {
                let key = text(&d["idempotencyKey"]);
                let wanted = match compensable {
                    Some(names) => names.iter().any(|n| scope_is(&e.state, n)),
                    None => plan.iter().any(|c| c.forward_key == key),
                };
                if !wanted {
                    continue;
                }
                call_key.insert(d["callId"].as_u64().unwrap_or(0), key.clone());
                index.entry(key.clone()).or_insert_with(|| {
                    rows.push(LedgerRow {
                        scope: e.state.clone(),
                        forward_key: key,
                        forward: "running",
                        compensation: "",
                        attempts: 0,
                        last_error: String::new(),
                    });
                    rows.len() - 1
                });
            }
            "TaskSucceeded" | "TaskFailed" | "TaskTimedOut" => {
                let Some(&i) = call_key.get(&d["callId"].as_u64().unwrap_or(0)).and_then(|k| index.get(k)) else {
                    continue;
                };
                let row = &mut rows[i];
                row.forward = match (e.r#type.as_str(), row.forward) {
                    ("TaskSucceeded", _) => "succeeded",
                    (_, "unknown") => "unknown",
                    _ if d["outcomeUnknown"] == Value::Bool(true) => "unknown",
                    _ => "failed",
                };
            }
            _ => {}
        }
    }
    for row in &mut rows {
        let planned = plan.iter().find(|c| c.forward_key == row.forward_key);
        row.compensation = match planned {
            Some(c) => {
                row.attempts = c.attempts;
                row.last_error = c.last_error.clone();
                match c.status.as_str() {
                    "SUCCEEDED" => "undone",
                    "STUCK" => "stuck",
                    "SKIPPED" => "skipped",
                    "RESOLVED" => "resolved",
                    _ => "still owed",
                }
            }
            None if row.forward == "failed" || row.forward == "running" => "none owed",
            None if status == "TERMINATED" => "not compensated",
            None => "done",
        };
    }
    rows
}

/// Per-state spans: entered→exited, attempts, backoff gaps; compensations as their own spans.
pub fn timeline(events: &[pb::HistoryEvent]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for e in events {
        let t = ms(e);
        let d = details(e);
        let kind = e.r#type.as_str();
        if let Some(state_kind) = kind.strip_suffix("StateEntered") {
            spans.push(Span {
                scope: e.state.clone(),
                kind: state_kind.to_owned(),
                entered_ms: t,
                exited_ms: None,
                last_ms: t,
                attempts: 0,
                backoffs_ms: Vec::new(),
                outcome: String::new(),
            });
            open.insert(e.state.clone(), spans.len() - 1);
            if state_kind == "Fail" {
                open.remove(&e.state);
                let span = spans.last_mut().expect("just pushed");
                span.exited_ms = Some(t);
                span.outcome = "fail".into();
            }
            continue;
        }
        let undo = format!("undo:{}", e.state);
        if kind == "CompensationScheduled" && !open.contains_key(&undo) {
            spans.push(Span {
                scope: e.state.clone(),
                kind: "Compensate".into(),
                entered_ms: t,
                exited_ms: None,
                last_ms: t,
                attempts: 0,
                backoffs_ms: Vec::new(),
                outcome: String::new(),
            });
            open.insert(undo.clone(), spans.len() - 1);
        }
        let key = if kind.starts_with("Compensation") { undo } else { e.state.clone() };
        let Some(&i) = open.get(&key) else { continue };
        let span = &mut spans[i];
        span.last_ms = t;
        match kind {
            "TaskScheduled" | "CompensationScheduled" => span.attempts += 1,
            "TaskRetryScheduled" | "StateRetryScheduled" | "CompensationRetryScheduled" => {
                span.backoffs_ms.push(d["delayMs"].as_i64().unwrap_or(0))
            }
            "TaskSucceeded" => span.outcome = "ok".into(),
            "TaskFailed" | "TaskTimedOut" | "CompensationFailed" => span.outcome = text(&d["error"]),
            "ParallelStateFailed" | "MapStateFailed" => {
                let error = text(&d["error"]);
                span.outcome = if error.is_empty() { "failed".into() } else { error };
            }
            "CompensationSucceeded" | "CompensationStuck" => {
                span.exited_ms = Some(t);
                span.outcome = if kind == "CompensationSucceeded" { "undone".into() } else { "stuck".into() };
                open.remove(&key);
            }
            _ if kind.ends_with("StateExited") => {
                span.exited_ms = Some(t);
                span.outcome = match span.outcome.as_str() {
                    "" | "ok" => "ok".into(),
                    error => format!("caught {error}"),
                };
                open.remove(&key);
            }
            _ => {}
        }
    }
    spans
}

pub async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let described = describe(&mut client, &args.id).await?;
    let execution = described.execution.clone().context("the server returned no execution")?;
    let events = all_history(&mut client, &execution.execution_id).await?;
    let compensable = definitions::fetch(&mut client, &execution.definition_name, execution.definition_version)
        .await
        .ok()
        .and_then(|d| compensable_states(&d.content));
    let ledger = ledger(&events, compensable.as_ref(), &described.compensations, &execution.status);
    let spans = timeline(&events);
    let origin = events.first().map(ms).unwrap_or(0);
    match args.server.output {
        Output::Json => {
            let mut value = execution_json(&execution);
            value["compensations"] = described.compensations.iter().map(compensation_json).collect();
            value["ledger"] = ledger
                .iter()
                .map(|r| {
                    json!({"state": r.scope, "forwardKey": r.forward_key, "forward": r.forward,
                           "compensation": r.compensation, "compensationAttempts": r.attempts,
                           "lastError": (!r.last_error.is_empty()).then_some(&r.last_error)})
                })
                .collect();
            value["timeline"] = spans
                .iter()
                .map(|s| {
                    json!({"state": s.scope, "kind": s.kind, "enteredOffsetMs": s.entered_ms - origin,
                           "durationMs": s.exited_ms.unwrap_or(s.last_ms) - s.entered_ms, "exited": s.exited_ms.is_some(),
                           "attempts": s.attempts, "backoffsMs": s.backoffs_ms, "outcome": s.outcome})
                })
                .collect();
            value["events"] = events.iter().map(event_json).collect();
            print_json(&value)?;
        }
        Output::Human => print_show(&execution, &ledger, &spans, origin),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_show(execution: &pb::Execution, ledger: &[LedgerRow], spans: &[Span], origin: i64) {
    let now = Utc::now();
    println!("execution  {}", execution.execution_id);
    println!("definition {}@{}", execution.definition_name, execution.definition_version);
    println!("status     {}", paint_status(&execution.status));
    if let Some(start) = time(&execution.start_time) {
        let so_far = if execution.stop_time.is_some() { "" } else { " so far" };
        println!(
            "started    {} ({}), took {}{so_far}",
            start.format("%Y-%m-%d %H:%M:%S UTC"),
            ago(start, now),
            run_time(execution, now).map(human_duration).unwrap_or_default()
        );
    }
    if execution.redrive_count > 0 {
        println!("redriven   {} time(s)", execution.redrive_count);
    }
    let input =
        if execution.input_json.len() <= 100 { execution.input_json.clone() } else { pretty(&execution.input_json) };
    println!("input      {}", indent(&input, 11));
    print_outcome(execution);
    if !ledger.is_empty() {
        println!("\nsaga ledger:");
        let mut t = table(&["step", "forward", "compensation", "attempts", "last error"]);
        for r in ledger {
            t.add_row(vec![
                Cell::new(&r.scope),
                client::status_cell(r.forward),
                client::status_cell(r.compensation),
                Cell::new(if r.attempts == 0 { String::new() } else { r.attempts.to_string() }),
                Cell::new(clip(&r.last_error, 40)),
            ]);
        }
        println!("{t}");
    }
    println!("\ntimeline:");
    let running = execution.status == "RUNNING";
    let mut t = table(&["at", "state", "type", "took", "attempts", "backoff", "outcome"]);
    for s in spans {
        let took = human_duration(chrono::TimeDelta::milliseconds(s.exited_ms.unwrap_or(s.last_ms) - s.entered_ms));
        let (took, outcome) = match (s.exited_ms, s.outcome.as_str()) {
            (None, _) if running => (format!("{took}+"), "in progress".to_owned()),
            (None, "") => (took, "aborted".to_owned()),
            (_, outcome) => (took, outcome.to_owned()),
        };
        let colour = match outcome.as_str() {
            "ok" | "undone" => Color::Green,
            "in progress" => Color::Cyan,
            o if o.starts_with("caught") => Color::Yellow,
            _ => Color::Red,
        };
        let backoff: Vec<String> =
            s.backoffs_ms.iter().map(|b| human_duration(chrono::TimeDelta::milliseconds(*b))).collect();
        let name = if s.kind == "Compensate" { format!("↩ {}", s.scope) } else { s.scope.clone() };
        t.add_row(vec![
            Cell::new(format!("+{}", human_duration(chrono::TimeDelta::milliseconds(s.entered_ms - origin))))
                .set_alignment(CellAlignment::Right),
            Cell::new(name),
            Cell::new(&s.kind),
            Cell::new(took).set_alignment(CellAlignment::Right),
            Cell::new(if s.attempts == 0 { String::new() } else { s.attempts.to_string() })
                .set_alignment(CellAlignment::Right),
            Cell::new(backoff.join(", ")),
            Cell::new(outcome).fg(colour),
        ]);
    }
    println!("{t}");
}

// ------------------------------------------------------------------ history, export

fn print_event(e: &pb::HistoryEvent, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string(&event_json(e))?),
        Output::Human => {
            let t = time(&e.timestamp).map(|t| t.format("%H:%M:%S%.3f").to_string()).unwrap_or_default();
            let kind = match e.r#type.as_str() {
                k if k.contains("Failed") || k.contains("Stuck") || k.contains("TimedOut") => paint(k, Color::Red),
                k if k.starts_with("Compensation") => paint(k, Color::Yellow),
                k if k.starts_with("Execution") => paint(k, Color::Cyan),
                k => k.to_owned(),
            };
            let pad = 28usize.saturating_sub(e.r#type.len());
            println!("{:>5} {t} {kind}{} {:<24} {}", e.id, " ".repeat(pad), e.state, clip(&e.details_json, 100));
        }
    }
    Ok(())
}

pub async fn history(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let described = describe(&mut client, &args.id).await?;
    if args.follow {
        // JSON while following: one event per line, as they come.
        let mut stream = client
            .watch_execution(pb::WatchExecutionRequest { execution_id: described.execution_id, after_event_id: 0 })
            .await
            .map_err(failed)?
            .into_inner();
        // The first event holds the input: what it hides is scrubbed from every later one.
        let mut secrets = Secrets::default();
        while let Some(event) = stream.next().await {
            let mut event = event.map_err(failed)?;
            secrets.extend(client.masker.event(&mut event, &secrets));
            print_event(&event, args.server.output)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let events = all_history(&mut client, &described.execution_id).await?;
    match args.server.output {
        Output::Json => print_json(&Value::Array(events.iter().map(event_json).collect()))?,
        Output::Human => {
            for e in &events {
                print_event(e, Output::Human)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The export document: the execution, its definition's text and every event with its cause.
pub async fn export_document(client: &mut Client, id: &str) -> anyhow::Result<Value> {
    let described = describe(client, id).await?;
    let execution = described.execution.clone().context("the server returned no execution")?;
    let events = all_history(client, &execution.execution_id).await?;
    let definition = definitions::fetch(client, &execution.definition_name, execution.definition_version).await?;
    let mut execution_value = execution_json(&execution);
    execution_value["compensations"] = described.compensations.iter().map(compensation_json).collect();
    Ok(json!({
        "format": "sagaflow-export/1",
        "exportedAt": Utc::now().to_rfc3339(),
        "execution": execution_value,
        "definition": {
            "name": execution.definition_name,
            "version": execution.definition_version,
            "content": definition.content,
        },
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    }))
}

pub async fn export(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let document = export_document(&mut client, &args.id).await?;
    print_json(&document)?;
    Ok(ExitCode::SUCCESS)
}

/// Milliseconds since the epoch of an exported RFC 3339 timestamp.
pub fn parse_millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, at_ms: i64, kind: &str, state: &str, details: Value) -> pb::HistoryEvent {
        pb::HistoryEvent {
            id,
            timestamp: Some(client::timestamp(DateTime::from_timestamp_millis(at_ms).expect("time"))),
            r#type: kind.into(),
            state: state.into(),
            details_json: if details.is_null() { String::new() } else { details.to_string() },
            cause_json: String::new(),
        }
    }

    fn saga() -> Vec<pb::HistoryEvent> {
        vec![
            ev(1, 0, "ExecutionStarted", "", Value::Null),
            ev(2, 0, "TaskStateEntered", "Reserve", Value::Null),
            ev(3, 0, "TaskScheduled", "Reserve", json!({"callId": 1, "idempotencyKey": "x:Reserve#1"})),
            ev(4, 120, "TaskSucceeded", "Reserve", json!({"callId": 1})),
            ev(5, 120, "TaskStateExited", "Reserve", Value::Null),
            ev(6, 120, "TaskStateEntered", "Charge", Value::Null),
            ev(7, 120, "TaskScheduled", "Charge", json!({"callId": 2, "idempotencyKey": "x:Charge#1"})),
            ev(8, 150, "TaskFailed", "Charge", json!({"callId": 2, "error": "Grpc.Unavailable"})),
            ev(9, 150, "TaskRetryScheduled", "Charge", json!({"delayMs": 1000, "error": "Grpc.Unavailable"})),
            ev(10, 1150, "TimerFired", "", json!({"timerId": 3})),
            ev(11, 1150, "TaskScheduled", "Charge", json!({"callId": 4, "idempotencyKey": "x:Charge#1"})),
            ev(
                12,
                1400,
                "TaskTimedOut",
                "Charge",
                json!({"callId": 4, "error": "States.Timeout", "outcomeUnknown": true}),
            ),
            ev(13, 1400, "CompensationStarted", "", json!({"plan": ["Charge", "Reserve"]})),
            ev(14, 1400, "CompensationScheduled", "Charge", json!({"callId": 5})),
            ev(15, 1500, "CompensationSucceeded", "Charge", Value::Null),
            ev(16, 1500, "CompensationScheduled", "Reserve", json!({"callId": 6})),
            ev(17, 1600, "CompensationFailed", "Reserve", json!({"error": "Boom"})),
            ev(18, 1600, "CompensationStuck", "Reserve", json!({"error": "Boom", "attempts": 1})),
        ]
    }

    fn plan() -> Vec<pb::CompensationStep> {
        let step = |scope: &str, status: &str| pb::CompensationStep {
            state: scope.into(),
            scope: scope.into(),
            forward_key: format!("x:{scope}#1"),
            status: status.into(),
            attempts: 1,
            ..Default::default()
        };
        vec![step("Charge", "SUCCEEDED"), step("Reserve", "STUCK")]
    }

    #[test]
    fn the_ledger_pairs_forward_outcomes_with_compensations() {
        let names: BTreeSet<String> = ["Reserve", "Charge"].map(String::from).into();
        let rows = ledger(&saga(), Some(&names), &plan(), "COMPENSATION_STUCK");
        let summary: Vec<_> = rows.iter().map(|r| (r.scope.as_str(), r.forward, r.compensation)).collect();
        assert_eq!(summary, [("Reserve", "succeeded", "stuck"), ("Charge", "unknown", "undone")]);
        // Without the definition, the plan says which steps are compensable.
        assert_eq!(ledger(&saga(), None, &plan(), "COMPENSATION_STUCK").len(), 2);
        // A saga that succeeded keeps what it did.
        let rows = ledger(&saga()[..5], Some(&names), &[], "SUCCEEDED");
        assert_eq!((rows[0].forward, rows[0].compensation), ("succeeded", "done"));
    }

    #[test]
    fn the_timeline_shows_durations_attempts_and_backoff() {
        let spans = timeline(&saga());
        let summary: Vec<_> = spans
            .iter()
            .map(|s| (s.kind.as_str(), s.scope.as_str(), s.exited_ms.unwrap_or(s.last_ms) - s.entered_ms, s.attempts))
            .collect();
        assert_eq!(
            summary,
            [
                ("Task", "Reserve", 120, 1),
                ("Task", "Charge", 1280, 2),
                ("Compensate", "Charge", 100, 1),
                ("Compensate", "Reserve", 100, 1)
            ]
        );
        assert_eq!(spans[1].backoffs_ms, [1000]);
        assert_eq!(spans[1].outcome, "States.Timeout");
        assert_eq!(spans[1].exited_ms, None);
        assert_eq!(
            (spans[0].outcome.as_str(), spans[2].outcome.as_str(), spans[3].outcome.as_str()),
            ("ok", "undone", "stuck")
        );
    }

    #[test]
    fn nested_scopes_match_their_state() {
        assert!(scope_is("Charge", "Charge"));
        assert!(scope_is("Fanout#1[0].Charge", "Charge"));
        assert!(!scope_is("Recharge", "Charge"));
        assert_eq!(parse_millis("2024-01-01T00:00:00.250Z"), Some(1_704_067_200_250));
    }
}
