//! `sagaflow stuck`: executions parked in COMPENSATION_STUCK, the step each is stuck on and
//! why; `stuck retry|skip|resolve` repair them (RepairCompensation, an audited history event).

use std::process::ExitCode;

use anyhow::bail;
use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::{Cell, Color};
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::repair_compensation_request::Action;
use serde_json::{Value, json};

use super::Output;
use super::client::{
    Client, Filter, ServerArgs, ago, all_matching, clip, compensation_json, connect, describe, failed, paint,
    paint_status, print_json, short_id, table, time,
};

#[derive(Debug, Args)]
pub struct StuckArgs {
    #[command(subcommand)]
    pub action: Option<StuckAction>,
    /// Only executions of this definition.
    #[arg(long, value_name = "NAME", global = true)]
    pub definition: Option<String>,
    /// With --all, act on every stuck execution without asking.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What a repair is called in confirmations.
struct Repair(&'static str);

impl super::actions::Verb for Repair {
    fn verb(&self) -> &'static str {
        self.0
    }
}

#[derive(Debug, Subcommand)]
pub enum StuckAction {
    /// Run the stuck compensations again with a fresh retry budget.
    Retry {
        #[command(flatten)]
        target: Target,
    },
    /// Leave the stuck compensations undone and go on with the rollback.
    Skip {
        #[command(flatten)]
        target: Target,
        /// Why (kept in the history).
        #[arg(long, required = true)]
        reason: String,
    },
    /// Record that the stuck compensations were done by other means, and go on.
    Resolve {
        #[command(flatten)]
        target: Target,
        /// Why (kept in the history).
        #[arg(long, required = true)]
        reason: String,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// The stuck execution (id or unique prefix).
    pub id: Option<String>,
    /// Every stuck execution (of --definition, when given).
    #[arg(long)]
    pub all: bool,
}

/// A stuck execution and its stuck steps.
#[derive(Debug)]
struct Stuck {
    execution: pb::Execution,
    steps: Vec<pb::CompensationStep>,
}

async fn stuck(client: &mut Client, definition: Option<String>) -> anyhow::Result<Vec<Stuck>> {
    let filter = Filter { statuses: vec!["COMPENSATION_STUCK".into()], definition, since: None };
    let mut out = Vec::new();
    for execution in all_matching(client, &filter).await? {
        // It may have been repaired since the listing: describe tells.
        let Ok(described) = describe(client, &execution.execution_id).await else { continue };
        let Some(execution) = described.execution else { continue };
        if execution.status != "COMPENSATION_STUCK" {
            continue;
        }
        let steps = described.compensations.into_iter().filter(|c| c.status == "STUCK").collect();
        out.push(Stuck { execution, steps });
    }
    Ok(out)
}

pub async fn run(args: StuckArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let (target, action, reason) = match args.action {
        None => return list(&mut client, args.definition, args.server.output).await,
        Some(StuckAction::Retry { target }) => (target, Action::Retry, String::new()),
        Some(StuckAction::Skip { target, reason }) => (target, Action::Skip, reason),
        Some(StuckAction::Resolve { target, reason }) => (target, Action::Resolve, reason),
    };
    let verb = match action {
        Action::Retry => "retried",
        Action::Skip => "skipped",
        _ => "resolved",
    };
    let ids: Vec<String> = match (target.id, target.all) {
        (Some(id), false) => vec![id],
        (None, true) => {
            let ids: Vec<String> =
                stuck(&mut client, args.definition).await?.into_iter().map(|s| s.execution.execution_id).collect();
            if !super::actions::confirm_bulk(&Repair(verb), ids.len(), args.yes)? {
                return Ok(ExitCode::from(1));
            }
            ids
        }
        _ => bail!("give one execution id or --all"),
    };
    let mut results = Vec::new();
    let mut refused = 0;
    for id in &ids {
        let request =
            pb::RepairCompensationRequest { execution_id: id.clone(), action: action as i32, reason: reason.clone() };
        match client.repair_compensation(request).await {
            Ok(r) => {
                let status = r.into_inner().execution.map(|e| e.status).unwrap_or_default();
                if args.server.output == Output::Human {
                    println!("{}  {verb}: accepted (status {})", short_id(id), paint_status(&status));
                }
                results.push(json!({"executionId": id, "ok": true, "status": status}));
            }
            Err(status) if ids.len() == 1 => return Err(failed(status)),
            Err(status) => {
                refused += 1;
                if args.server.output == Output::Human {
                    println!("{}  {}: {}", short_id(id), paint("refused", Color::Red), status.message());
                }
                results.push(json!({"executionId": id, "ok": false, "error": status.message()}));
            }
        }
    }
    match args.server.output {
        Output::Json => print_json(&Value::Array(results))?,
        Output::Human if ids.len() != 1 => println!("{} {verb}, {refused} refused", ids.len() - refused),
        Output::Human => {}
    }
    Ok(if refused > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn list(client: &mut Client, definition: Option<String>, output: Output) -> anyhow::Result<ExitCode> {
    let stuck = stuck(client, definition).await?;
    match output {
        Output::Json => print_json(&Value::Array(
            stuck
                .iter()
                .map(|s| {
                    json!({
                        "executionId": s.execution.execution_id,
                        "definition": s.execution.definition_name,
                        "definitionVersion": s.execution.definition_version,
                        "startTime": time(&s.execution.start_time).map(|t| t.to_rfc3339()),
                        "error": s.execution.error,
                        "stuck": s.steps.iter().map(compensation_json).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ))?,
        Output::Human => {
            if stuck.is_empty() {
                println!("no execution is stuck in compensation");
                return Ok(ExitCode::SUCCESS);
            }
            let now = Utc::now();
            let mut t = table(&["id", "definition", "started", "stuck step", "attempts", "last error"]);
            for s in &stuck {
                let e = &s.execution;
                for step in &s.steps {
                    let error = if step.last_cause.is_empty() {
                        step.last_error.clone()
                    } else {
                        format!("{}: {}", step.last_error, step.last_cause)
                    };
                    t.add_row(vec![
                        Cell::new(short_id(&e.execution_id)),
                        Cell::new(format!("{}@{}", e.definition_name, e.definition_version)),
                        Cell::new(time(&e.start_time).map(|t| ago(t, now)).unwrap_or_default()),
                        Cell::new(&step.scope).fg(Color::Red),
                        Cell::new(step.attempts),
                        Cell::new(clip(&error, 60)),
                    ]);
                }
            }
            println!("{t}");
            println!(
                "repair with `sagaflow stuck retry ID`, `stuck skip ID --reason R` or `stuck resolve ID --reason R`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
