//! Acting on executions: `rerun`, `redrive`, `cancel`, `terminate`. Each takes one id (or
//! unique prefix) or a filter (`--status`, `--definition`, `--since`) and then acts on every
//! match, printing one line per execution and a summary. `fork` acts on one execution.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use comfy_table::Color;
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::{Value, json};

use super::Output;
use super::client::{
    Client, Filter, ServerArgs, all_matching, connect, describe, paint, paint_status, print_json, short_id,
};

#[derive(Debug, Args)]
pub struct ActArgs {
    /// An execution id or unique prefix; without it, every execution matching the filter.
    pub id: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
    /// Act on every execution the filter matches without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// Why, for the history (recorded with the request).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The execution to fork: an id or unique prefix.
    pub id: String,
    /// The top-level state to run again; everything before it is kept, not called again.
    #[arg(long)]
    pub from_state: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `fork ID --from-state S`: a new execution that keeps the original's history before S.
pub async fn fork(args: ForkArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let forked = client
        .fork_execution(pb::ForkExecutionRequest { execution_id: args.id.clone(), from_state: args.from_state.clone() })
        .await;
    let execution = match forked {
        Ok(response) => response.into_inner().execution,
        // The server's message names the execution and the state already.
        Err(status) => {
            eprintln!("{}", status.message());
            return Ok(ExitCode::from(1));
        }
    };
    let Some(execution) = execution else { bail!("the server returned no execution") };
    match args.server.output {
        Output::Json => print_json(&json!({
            "forkedFrom": args.id, "fromState": args.from_state, "executionId": execution.execution_id, "status": execution.status,
        }))?,
        Output::Human => println!(
            "{} forked at {} as {} ({})",
            args.id,
            args.from_state,
            execution.execution_id,
            paint_status(&execution.status)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// What an acting command does to each execution.
#[derive(Debug, Clone)]
pub enum Act {
    Rerun,
    Redrive,
    Cancel(Option<String>),
    Terminate(Option<String>),
}

impl Act {
    fn verb(&self) -> &'static str {
        match self {
            Act::Rerun => "rerun",
            Act::Redrive => "redriven",
            Act::Cancel(_) => "cancelled",
            Act::Terminate(_) => "terminated",
        }
    }
}

/// The result of acting on one execution.
#[derive(Debug)]
struct Done {
    id: String,
    result: Result<(pb::Execution, Option<String>), tonic::Status>,
}

async fn act_on(client: &mut Client, act: &Act, id: &str) -> Result<(pb::Execution, Option<String>), tonic::Status> {
    let ex = |e: Option<pb::Execution>| e.ok_or_else(|| tonic::Status::internal("the server returned no execution"));
    match act {
        Act::Rerun => {
            let described = client
                .describe_execution(pb::DescribeExecutionRequest { execution_id: id.to_owned() })
                .await?
                .into_inner();
            let old = ex(described.execution)?;
            if crate::security::redact::holds_mask(&old.input_json) {
                return Err(tonic::Status::failed_precondition(format!(
                    "the server masks fields of this execution's input (its redact setting), so rerun cannot copy \
                     it; start a new execution with the original input: sagaflow start {} --input @FILE",
                    old.definition_name
                )));
            }
            let started = client
                .start_execution(pb::StartExecutionRequest {
                    definition_name: old.definition_name,
                    definition_version: 0,
                    input_json: old.input_json,
                    execution_id: String::new(),
                    idempotency_key: String::new(),
                    wait_for_completion: false,
                })
                .await?
                .into_inner();
            let new = ex(started.execution)?;
            let new_id = new.execution_id.clone();
            Ok((new, Some(new_id)))
        }
        Act::Redrive => client
            .redrive_execution(pb::RedriveExecutionRequest { execution_id: id.to_owned() })
            .await
            .and_then(|r| ex(r.into_inner().execution))
            .map(|e| (e, None)),
        Act::Cancel(reason) => client
            .cancel_execution(pb::CancelExecutionRequest {
                execution_id: id.to_owned(),
                reason: reason.clone().unwrap_or_default(),
            })
            .await
            .and_then(|r| ex(r.into_inner().execution))
            .map(|e| (e, None)),
        Act::Terminate(reason) => client
            .terminate_execution(pb::TerminateExecutionRequest {
                execution_id: id.to_owned(),
                reason: reason.clone().unwrap_or_default(),
            })
            .await
            .and_then(|r| ex(r.into_inner().execution))
            .map(|e| (e, None)),
    }
}

/// The executions an acting command covers: the one id, or every match of the filter.
pub async fn targets(client: &mut Client, id: Option<&str>, filter: &Filter) -> anyhow::Result<Vec<String>> {
    match (id, filter.is_empty()) {
        (Some(_), false) => bail!("give an execution id or a filter (--status, --definition, --since), not both"),
        (Some(id), true) => {
            // Resolve a prefix first, so the lines show the full id.
            Ok(vec![describe(client, id).await?.execution_id])
        }
        (None, false) => Ok(all_matching(client, filter).await?.into_iter().map(|e| e.execution_id).collect()),
        (None, true) => {
            bail!("give an execution id, or a filter (--status, --definition, --since) to act on every match")
        }
    }
}

pub async fn run(args: ActArgs, act: Act) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let ids = targets(&mut client, args.id.as_deref(), &args.filter).await?;
    let single = args.id.is_some();
    if !single && !confirm_bulk(&act, ids.len(), args.yes)? {
        return Ok(ExitCode::from(1));
    }
    let mut done = Vec::new();
    for id in ids {
        let result = act_on(&mut client, &act, &id).await;
        let d = Done { id, result };
        if args.server.output == Output::Human {
            print_line(&act, &d);
        }
        done.push(d);
    }
    let failures = done.iter().filter(|d| d.result.is_err()).count();
    match args.server.output {
        Output::Json => print_json(&Value::Array(done.iter().map(done_json).collect()))?,
        Output::Human if !single || done.is_empty() => {
            println!("{} {}, {failures} refused", done.len() - failures, act.verb());
        }
        Output::Human => {}
    }
    Ok(if failures > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// A filter may match many executions: say how many, and act only with `--yes` or a "y" typed
/// at a terminal. Without a terminal and without `--yes` nothing is done.
pub fn confirm_bulk(act: &impl Verb, matches: usize, yes: bool) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if matches == 0 {
        eprintln!("no execution matches the filter");
        return Ok(true);
    }
    eprintln!("{matches} execution(s) match the filter and will be {}", act.verb());
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("nothing done: add --yes to act on them");
        return Ok(false);
    }
    eprint!("proceed? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let proceed = matches!(answer.trim(), "y" | "Y" | "yes");
    if !proceed {
        eprintln!("nothing done");
    }
    Ok(proceed)
}

/// How an acting command names what it does, for confirmations and summaries.
pub trait Verb {
    fn verb(&self) -> &'static str;
}

impl Verb for Act {
    fn verb(&self) -> &'static str {
        Act::verb(self)
    }
}

fn print_line(act: &Act, d: &Done) {
    match &d.result {
        Ok((execution, Some(new_id))) => {
            println!("{}  {} as {} ({})", short_id(&d.id), act.verb(), new_id, paint_status(&execution.status))
        }
        Ok((execution, None)) => {
            println!("{}  {}: accepted (status {})", short_id(&d.id), act.verb(), paint_status(&execution.status))
        }
        Err(status) => println!("{}  {}: {}", short_id(&d.id), paint("refused", Color::Red), status.message()),
    }
}

fn done_json(d: &Done) -> Value {
    match &d.result {
        Ok((execution, new_id)) => json!({
            "executionId": d.id, "ok": true, "status": execution.status,
            "newExecutionId": new_id,
        }),
        Err(status) => json!({
            "executionId": d.id, "ok": false, "error": status.message(), "code": format!("{:?}", status.code()),
        }),
    }
}
