//! `sagaflow definitions deploy|list|show`: register definitions on the server and read
//! them back. A rejected definition prints every diagnostic the server found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::Cell;
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::{Value, json};

use super::Output;
use super::client::{self, ServerArgs, ago, connect, failed, paint, parse_json, print_json, table, time, violations};

#[derive(Debug, Args)]
pub struct DefinitionsArgs {
    #[command(subcommand)]
    pub command: DefinitionsCommand,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum DefinitionsCommand {
    /// Register a definition file (a new version unless it is the same as the latest).
    Deploy {
        file: PathBuf,
        /// The definition's name (default: the file name without `.asl.json`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List registered definitions and their versions.
    List {
        /// Only this definition's versions.
        name: Option<String>,
    },
    /// Print a definition's content: NAME (the latest version) or NAME@VERSION.
    Show { definition: String },
}

pub async fn run(args: DefinitionsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DefinitionsCommand::Deploy { file, name } => deploy(&file, name, &args.server).await,
        DefinitionsCommand::List { name } => list(name, &args.server).await,
        DefinitionsCommand::Show { definition } => show(&definition, &args.server).await,
    }
}

/// `order.asl.json` → `order`.
pub fn name_from_file(file: &Path) -> String {
    let base = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for suffix in [".asl.json", ".json"] {
        if let Some(stem) = base.strip_suffix(suffix) {
            return stem.to_owned();
        }
    }
    base
}

/// `NAME` or `NAME@VERSION` (version 0: the latest).
pub fn parse_reference(text: &str) -> anyhow::Result<(String, u32)> {
    match text.rsplit_once('@') {
        Some((name, version)) => {
            let v = version.trim_start_matches('v').parse().with_context(|| format!("{version:?} is not a version"))?;
            Ok((name.to_owned(), v))
        }
        None => Ok((text.to_owned(), 0)),
    }
}

async fn deploy(file: &Path, name: Option<String>, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let content = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = name.unwrap_or_else(|| name_from_file(file));
    let mut client = connect(server).await?;
    let response = match client.register_definition(pb::RegisterDefinitionRequest { name: name.clone(), content }).await
    {
        Ok(r) => r.into_inner(),
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            let problems = violations(&status);
            match server.output {
                Output::Json => print_json(&json!({
                    "name": name, "file": file.display().to_string(), "valid": false, "message": status.message(),
                    "errors": problems.iter().map(|(f, d)| json!({"pointer": f, "message": d})).collect::<Vec<_>>(),
                }))?,
                Output::Human => {
                    eprintln!("{}: {} rejected: {}", file.display(), name, status.message());
                    for (pointer, description) in &problems {
                        // The description starts with `line:column: `.
                        eprintln!("{}:{description} (at {pointer})", file.display());
                    }
                }
            }
            return Ok(ExitCode::from(1));
        }
        Err(status) => return Err(failed(status)),
    };
    let summary = response.definition.context("the server returned no definition")?;
    match server.output {
        Output::Json => print_json(&json!({
            "name": summary.name, "version": summary.version, "hash": summary.hash, "created": response.created,
            "warnings": response.warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
        }))?,
        Output::Human => {
            let what = if response.created { paint("created", comfy_table::Color::Green) } else { "unchanged".into() };
            println!(
                "{} v{}: {what} (sha256 {})",
                summary.name,
                summary.version,
                &summary.hash[..summary.hash.len().min(12)]
            );
            for w in &response.warnings {
                let state = if w.state.is_empty() { String::new() } else { format!(" [{}]", w.state) };
                println!("{}:{}:{}: warning {}: {}{state}", file.display(), w.line, w.column, w.code, w.message);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn diagnostic_json(d: &pb::Diagnostic) -> Value {
    json!({"severity": d.severity, "code": d.code, "line": d.line, "column": d.column,
           "pointer": d.pointer, "state": (!d.state.is_empty()).then_some(&d.state), "message": d.message})
}

fn summary_json(s: &pb::DefinitionSummary) -> Value {
    json!({"name": s.name, "version": s.version, "hash": s.hash,
           "createdAt": time(&s.created_at).map(|t| t.to_rfc3339())})
}

async fn list(name: Option<String>, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(server).await?;
    let response = client
        .list_definitions(pb::ListDefinitionsRequest { name: name.unwrap_or_default() })
        .await
        .map_err(failed)?
        .into_inner();
    match server.output {
        Output::Json => print_json(&Value::Array(response.definitions.iter().map(summary_json).collect()))?,
        Output::Human => {
            let now = Utc::now();
            let mut t = table(&["name", "version", "sha256", "registered"]);
            for d in &response.definitions {
                t.add_row(vec![
                    Cell::new(&d.name),
                    Cell::new(d.version),
                    Cell::new(&d.hash[..d.hash.len().min(12)]),
                    Cell::new(time(&d.created_at).map(|c| ago(c, now)).unwrap_or_default()),
                ]);
            }
            if response.definitions.is_empty() {
                println!("no definitions registered (deploy one with `sagaflow definitions deploy FILE`)");
            } else {
                println!("{t}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(reference: &str, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = parse_reference(reference)?;
    let mut client = connect(server).await?;
    let definition = fetch(&mut client, &name, version).await?;
    let summary = definition.summary.clone().unwrap_or_default();
    match server.output {
        Output::Json => {
            let mut value = summary_json(&summary);
            value["content"] = parse_json(&definition.content);
            print_json(&value)?
        }
        Output::Human => println!("{}", definition.content.trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}

/// GetDefinition (version 0: the latest).
pub async fn fetch(client: &mut client::Client, name: &str, version: u32) -> anyhow::Result<pb::Definition> {
    client
        .get_definition(pb::GetDefinitionRequest { name: name.to_owned(), version })
        .await
        .map_err(failed)?
        .into_inner()
        .definition
        .context("the server returned no definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_references() {
        assert_eq!(name_from_file(Path::new("saga-definitions/order.asl.json")), "order");
        assert_eq!(name_from_file(Path::new("x/refund.json")), "refund");
        assert_eq!(parse_reference("order").expect("name"), ("order".into(), 0));
        assert_eq!(parse_reference("order@3").expect("versioned"), ("order".into(), 3));
        assert_eq!(parse_reference("order@v2").expect("v-prefixed"), ("order".into(), 2));
        assert!(parse_reference("order@latest").is_err());
    }
}
