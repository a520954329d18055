//! `sagaflow replay`: re-evaluate a recorded history offline with the pure interpreter, under
//! the recorded definition or a new one, and report the first event where the new run parts
//! from the recorded one (or that it takes the same path).
//!
//! Every recorded event that carries a `cause` (start, call answers, timers, operator acts)
//! is fed, in order, to a fresh [`Execution`]; the history the interpreter produces is compared
//! with the recorded one event by event: type, state and details (timestamps and ids aside).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use comfy_table::Color;
use sagaflow_language::Definition;
use sagaflow_language::interpreter::{self, EventKind, Execution, HistoryEvent};
use serde_json::{Value, json};

use super::Output;
use super::client::{ServerArgs, clip, connect, paint, print_json, short_id};
use super::executions::{export_document, parse_millis};

#[derive(Debug, Args)]
#[group(id = "source", required = true, multiple = false, args = ["id", "file"])]
pub struct ReplayArgs {
    /// The execution to fetch from the server (id or unique prefix).
    pub id: Option<String>,
    /// An export (`sagaflow export ID > HISTORY.json`) to replay offline instead.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Replay under this definition file instead of the recorded one.
    #[arg(long)]
    pub definition: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Where a replay parted from the recorded history.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The recorded event's id (or, for extra events, the id the replay gave it).
    pub event_id: u64,
    pub state: Option<String>,
    /// `type`, `state`, `payload`, `compensation plan`, `input` (a recorded input the new run
    /// refuses), `missing` (the new run never records the event) or `extra`.
    pub what: &'static str,
    pub message: String,
    pub recorded: Option<HistoryEvent>,
    pub replayed: Option<HistoryEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    Same { events: usize },
    Diverged(Box<Divergence>),
}

/// Rebuild the recorded events from their export/API JSON (`type`, `cause` via serde).
pub fn events_from_json(events: &[Value]) -> anyhow::Result<Vec<HistoryEvent>> {
    events
        .iter()
        .map(|e| {
            let id = e["id"].as_u64().context("an event has no id")?;
            let kind: EventKind = serde_json::from_value(e["type"].clone()).with_context(|| {
                format!("event {id} has an unknown type {} (a newer sagaflow's export?)", e["type"])
            })?;
            let timestamp_ms = e["timestampMs"]
                .as_i64()
                .or_else(|| e["timestamp"].as_str().and_then(parse_millis))
                .with_context(|| format!("event {id} has no readable timestamp"))?;
            let cause = match &e["cause"] {
                Value::Null => None,
                cause => Some(
                    serde_json::from_value(cause.clone())
                        .with_context(|| format!("event {id} has an unreadable cause"))?,
                ),
            };
            Ok(HistoryEvent {
                id,
                timestamp_ms,
                kind,
                state: e["state"].as_str().filter(|s| !s.is_empty()).map(str::to_owned),
                details: e["details"].clone(),
                cause,
            })
        })
        .collect()
}

fn differs(recorded: &HistoryEvent, replayed: &HistoryEvent) -> Option<(&'static str, String)> {
    if recorded.kind != replayed.kind {
        return Some(("type", format!("recorded {} but the replay records {}", recorded.kind, replayed.kind)));
    }
    if recorded.state != replayed.state {
        return Some((
            "state",
            format!(
                "{} in state {} but the replay is in state {}",
                recorded.kind,
                recorded.state.as_deref().unwrap_or("-"),
                replayed.state.as_deref().unwrap_or("-")
            ),
        ));
    }
    if recorded.details == replayed.details {
        return None;
    }
    if recorded.kind == EventKind::CompensationStarted && recorded.details["plan"] != replayed.details["plan"] {
        return Some((
            "compensation plan",
            format!("the compensation plan was {} but would be {}", recorded.details["plan"], replayed.details["plan"]),
        ));
    }
    let keys: Vec<String> = match (&recorded.details, &replayed.details) {
        (Value::Object(a), Value::Object(b)) => a
            .keys()
            .chain(b.keys().filter(|k| !a.contains_key(*k)))
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let which = if keys.is_empty() { String::new() } else { format!(" ({})", keys.join(", ")) };
    Some(("payload", format!("{} carries different details{which}", recorded.kind)))
}

/// Feed the recorded inputs to a fresh execution under `definition`; compare as it goes.
pub fn replay(definition: &Definition, recorded: &[HistoryEvent]) -> Replay {
    let mut execution = Execution::new();
    let mut produced: Vec<HistoryEvent> = Vec::new();
    let mut checked = 0;
    let mut i = 0;
    loop {
        // Compare everything produced so far.
        while checked < produced.len() {
            let replayed = &produced[checked];
            let Some(rec) = recorded.get(checked) else {
                return Replay::Diverged(Box::new(Divergence {
                    event_id: replayed.id,
                    state: replayed.state.clone(),
                    what: "extra",
                    message: format!("the replay records {} where the recorded history ends", replayed.kind),
                    recorded: None,
                    replayed: Some(replayed.clone()),
                }));
            };
            if let Some((what, message)) = differs(rec, replayed) {
                return Replay::Diverged(Box::new(Divergence {
                    event_id: rec.id,
                    state: rec.state.clone(),
                    what,
                    message,
                    recorded: Some(rec.clone()),
                    replayed: Some(replayed.clone()),
                }));
            }
            checked += 1;
        }
        i = i.max(produced.len());
        let Some(rec) = recorded.get(i) else { return Replay::Same { events: recorded.len() } };
        let Some(envelope) = rec.as_input() else {
            return Replay::Diverged(Box::new(Divergence {
                event_id: rec.id,
                state: rec.state.clone(),
                what: "missing",
                message: format!("the replay never records {} (it stops short of it)", rec.kind),
                recorded: Some(rec.clone()),
                replayed: None,
            }));
        };
        match interpreter::step(definition, &mut execution, envelope) {
            Ok(step) if step.history.is_empty() => {
                return Replay::Diverged(Box::new(Divergence {
                    event_id: rec.id,
                    state: rec.state.clone(),
                    what: "missing",
                    message: format!("the replay takes the recorded input of {} without recording it", rec.kind),
                    recorded: Some(rec.clone()),
                    replayed: None,
                }));
            }
            Ok(step) => produced.extend(step.history),
            Err(e) => {
                return Replay::Diverged(Box::new(Divergence {
                    event_id: rec.id,
                    state: rec.state.clone(),
                    what: "input",
                    message: format!("the recorded {} does not fit the replayed execution: {e}", rec.kind),
                    recorded: Some(rec.clone()),
                    replayed: None,
                }));
            }
        }
    }
}

fn compile(text: &str, origin: &str) -> anyhow::Result<Definition> {
    match sagaflow_language::compile(text) {
        Ok(c) => Ok(c.definition),
        Err(diagnostics) => bail!("{origin} is not a valid definition:\n{diagnostics}"),
    }
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let document = match (&args.file, &args.id) {
        (Some(file), _) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not an export (JSON)", file.display()))?
        }
        (None, Some(id)) => export_document(&mut connect(&args.server).await?, id).await?,
        (None, None) => bail!("give an execution id or --file HISTORY.json"),
    };
    let events = document["events"].as_array().context("the export has no events")?;
    let recorded = events_from_json(events)?;
    let name = format!(
        "{}@{}",
        document["definition"]["name"].as_str().unwrap_or("?"),
        document["definition"]["version"].as_u64().unwrap_or(0)
    );
    let (definition, against) = match &args.definition {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            (compile(&text, &path.display().to_string())?, Some(path.as_path()))
        }
        None => {
            let text = document["definition"]["content"].as_str().context("the export has no definition content")?;
            (compile(text, &format!("the recorded definition {name}"))?, None)
        }
    };
    let outcome = replay(&definition, &recorded);
    let id = document["execution"]["executionId"].as_str().unwrap_or("?");
    match args.server.output {
        Output::Json => print_json(&outcome_json(&outcome, id, &name, against, recorded.len()))?,
        Output::Human => print_outcome(&outcome, id, &name, against, &recorded),
    }
    Ok(match outcome {
        Replay::Same { .. } => ExitCode::SUCCESS,
        Replay::Diverged(_) => ExitCode::from(1),
    })
}

fn event_value(e: &Option<HistoryEvent>) -> Value {
    match e {
        Some(e) => json!({"id": e.id, "type": e.kind, "state": e.state, "details": e.details}),
        None => Value::Null,
    }
}

fn outcome_json(outcome: &Replay, id: &str, name: &str, against: Option<&Path>, recorded: usize) -> Value {
    let mut value = json!({
        "executionId": id, "recordedDefinition": name,
        "definition": against.map(|p| p.display().to_string()), "recordedEvents": recorded,
    });
    match outcome {
        Replay::Same { events } => {
            value["same"] = json!(true);
            value["events"] = json!(events);
        }
        Replay::Diverged(d) => {
            value["same"] = json!(false);
            value["divergence"] = json!({
                "eventId": d.event_id, "state": d.state, "what": d.what, "message": d.message,
                "recorded": event_value(&d.recorded), "replayed": event_value(&d.replayed),
            });
        }
    }
    value
}

fn print_outcome(outcome: &Replay, id: &str, name: &str, against: Option<&Path>, recorded: &[HistoryEvent]) {
    let inputs = recorded.iter().filter(|e| e.cause.is_some()).count();
    let under = against.map(|p| p.display().to_string()).unwrap_or_else(|| format!("the recorded definition {name}"));
    println!("replayed {} ({name}): {} events, {inputs} inputs, under {under}", short_id(id), recorded.len());
    match outcome {
        Replay::Same { events } if against.is_some() => {
            println!("{} ({events} events)", paint("the new definition takes the same path", Color::Green))
        }
        Replay::Same { events } => println!(
            "{} ({events} events)",
            paint("the recorded definition reproduces the history exactly", Color::Green)
        ),
        Replay::Diverged(d) => {
            let state = d.state.as_deref().map(|s| format!(" in state {s}")).unwrap_or_default();
            println!("{} at event {}{state}: {} differs", paint("diverges", Color::Red), d.event_id, d.what);
            println!("  {}", d.message);
            let line = |e: &HistoryEvent| {
                let details = if e.details.is_null() { String::new() } else { e.details.to_string() };
                format!("{} {} {}", e.kind, e.state.as_deref().unwrap_or(""), clip(&details, 160))
            };
            if let Some(r) = &d.recorded {
                println!("  recorded: {}", line(r));
            }
            if let Some(r) = &d.replayed {
                println!("  replayed: {}", line(r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sagaflow_language::driver::{self, Options, TaskOutcome};
    use sagaflow_language::interpreter::Call;

    use super::*;

    fn definition(json: Value) -> Definition {
        match sagaflow_language::compile_value(&json) {
            Ok(c) => c.definition,
            Err(d) => panic!("test definition invalid:\n{d}"),
        }
    }

    fn task(name: &str, next: Option<&str>, compensate: bool) -> Value {
        let resource = format!("grpc://p/s.v1.S/{name}");
        let mut t = json!({ "Type": "Task", "Resource": resource });
        match next {
            Some(n) => t["Next"] = json!(n),
            None => t["End"] = json!(true),
        }
        if compensate {
            t["Compensate"] = json!({ "Resource": format!("{resource}Undo") });
        } else {
            t["SagaRole"] = json!("readonly");
        }
        t
    }

    /// Prepare (Pass) → A → B → C; C fails, so B and A are compensated.
    fn saga() -> Value {
        json!({
            "StartAt": "Prepare",
            "States": {
                "Prepare": { "Type": "Pass", "Result": { "x": 1 }, "ResultPath": "$.prep", "Next": "A" },
                "A": task("A", Some("B"), true),
                "B": task("B", Some("C"), true),
                "C": task("C", None, true),
            }
        })
    }

    /// Run in memory; return the history as it comes out of `sagaflow export`.
    fn recorded(def: &Value) -> Vec<Value> {
        let mut handler = |call: &Call, _now: i64| match call.state.as_str() {
            "C" if call.compensates.is_none() => {
                TaskOutcome::Fail { error: "Boom".into(), cause: Some("C broke".into()), outcome_unknown: false }
            }
            _ => TaskOutcome::Succeed(json!({ "from": call.state })),
        };
        let outcome = driver::run(&definition(def.clone()), json!({ "order": 1 }), &mut handler, &Options::default())
            .expect("run finishes");
        assert_eq!(outcome.status, interpreter::Status::Compensated);
        outcome
            .history
            .iter()
            .map(|h| {
                json!({
                    "id": h.id,
                    "timestamp": chrono::DateTime::from_timestamp_millis(h.timestamp_ms)
                        .expect("time")
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "type": h.kind.as_str(),
                    "state": h.state,
                    "details": h.details,
                    "cause": h.cause.as_ref().map(|c| serde_json::to_value(c).expect("cause")),
                })
            })
            .collect()
    }

    fn diverged(outcome: Replay) -> Divergence {
        match outcome {
            Replay::Diverged(d) => *d,
            Replay::Same { events } => panic!("expected a divergence, the replay took the same path ({events} events)"),
        }
    }

    #[test]
    fn the_same_definition_takes_the_same_path() {
        let events = events_from_json(&recorded(&saga())).expect("events");
        assert!(events.iter().any(|e| e.kind == EventKind::CompensationSucceeded));
        assert_eq!(replay(&definition(saga()), &events), Replay::Same { events: events.len() });
    }

    #[test]
    fn a_changed_result_is_a_payload_divergence() {
        let events = events_from_json(&recorded(&saga())).expect("events");
        let mut changed = saga();
        changed["States"]["Prepare"]["Result"] = json!({ "x": 2 });
        let d = diverged(replay(&definition(changed), &events));
        assert_eq!((d.what, d.state.as_deref()), ("payload", Some("Prepare")));
        assert_eq!(d.recorded.expect("recorded").kind, EventKind::PassStateExited);
    }

    #[test]
    fn a_removed_step_is_a_state_divergence() {
        let events = events_from_json(&recorded(&saga())).expect("events");
        let mut changed = saga();
        changed["States"]["A"]["Next"] = json!("C");
        changed["States"].as_object_mut().expect("states").shift_remove("B");
        let d = diverged(replay(&definition(changed), &events));
        assert_eq!((d.what, d.state.as_deref()), ("state", Some("B")));
        assert_eq!(d.replayed.expect("replayed").state.as_deref(), Some("C"));
    }

    #[test]
    fn a_step_without_compensation_changes_the_plan() {
        let events = events_from_json(&recorded(&saga())).expect("events");
        let mut changed = saga();
        changed["States"]["B"] = task("B", Some("C"), false);
        let d = diverged(replay(&definition(changed), &events));
        assert_eq!(d.what, "compensation plan");
        assert!(d.message.contains("[\"B\",\"A\"]"), "{}", d.message);
    }

    #[test]
    fn an_answer_to_a_call_never_made_is_reported_not_fatal() {
        let mut raw = recorded(&saga());
        let last = raw.last().cloned().expect("events");
        let mut answer = last.clone();
        answer["id"] = json!(last["id"].as_u64().expect("id") + 1);
        answer["type"] = json!("TaskSucceeded");
        answer["cause"] = json!({ "type": "TaskSucceeded", "id": 999, "output": {} });
        raw.push(answer);
        let events = events_from_json(&raw).expect("events");
        let d = diverged(replay(&definition(saga()), &events));
        assert_eq!(d.what, "input");
        assert!(d.message.contains("999"), "{}", d.message);
    }

    #[test]
    fn unknown_types_are_refused_with_the_event_id() {
        let e = events_from_json(&[json!({"id": 7, "timestamp": "2024-01-01T00:00:00Z", "type": "Teleported"})]);
        assert!(e.expect_err("unknown").to_string().contains("event 7"));
    }
}
