//! `sagaflow chaos set|list|clear`: fault injection on a participant, through its
//! `participants.v1.Chaos` service (it talks to the participant, not to the orchestrator).
//! A fault the participant refuses (an unknown error code, a bad method name) prints its
//! reason and exits 1.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use comfy_table::{Cell, Color};
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::participants::v1::{ClearFaultsRequest, Fault, ListFaultsRequest, SetFaultRequest};
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::Output;
use super::client::{paint, print_json, table, violations};

#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: ChaosCommand,
}

/// Which participant, and how to print.
#[derive(Debug, Clone, Args)]
pub struct ParticipantArgs {
    /// The participant's gRPC address (it serves participants.v1.Chaos), e.g. http://127.0.0.1:50060.
    #[arg(long, env = "SAGAFLOW_CHAOS_PARTICIPANT", value_name = "URL")]
    pub participant: String,
    #[arg(long, value_enum, default_value_t = Output::Human)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Arm a fault on one method (or `*`), replacing the fault already set on it.
    Set(SetArgs),
    /// List the faults armed on the participant (also `chaos show`).
    #[command(alias = "show")]
    List {
        #[command(flatten)]
        target: ParticipantArgs,
    },
    /// Disarm the fault of one method, or every fault.
    Clear {
        /// Only this method's fault (default: every fault).
        #[arg(long, value_name = "METHOD")]
        method: Option<String>,
        #[command(flatten)]
        target: ParticipantArgs,
    },
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// A full method name (`payment.v1.Payment/Charge`), or `*` for every business method
    /// (except the read-only Get* methods).
    #[arg(long, value_name = "METHOD")]
    pub method: String,
    /// Probability (0..1) that a matching call fails. Default: 1 when --error-code or
    /// --apply-then-fail is given, else 0 (latency only).
    #[arg(long, value_name = "R", value_parser = parse_error_rate)]
    pub error_rate: Option<f64>,
    /// Delay added before each matching call is handled, e.g. `200ms`, `2s`.
    #[arg(long, value_name = "DURATION", value_parser = parse_latency)]
    pub latency: Option<Duration>,
    /// How the call fails: a gRPC code name (UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, ...)
    /// or a business error name (Payment.CardDeclined). Default: UNAVAILABLE.
    #[arg(long, value_name = "CODE")]
    pub error_code: Option<String>,
    /// Handle and commit the call, then answer with the error anyway (an applied effect the
    /// caller cannot see).
    #[arg(long)]
    pub apply_then_fail: bool,
    /// Affect only the next N matching calls, then disarm (default: until cleared).
    #[arg(long, value_name = "N")]
    pub remaining: Option<u32>,
    #[command(flatten)]
    pub target: ParticipantArgs,
}

/// `--error-rate`: a number from 0 to 1.
pub fn parse_error_rate(text: &str) -> Result<f64, String> {
    let rate: f64 =
        text.trim().parse().map_err(|_| format!("{text:?} is not a number (give a probability from 0 to 1)"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{text} is not between 0 and 1 (1 fails every call, 0.25 one call in four)"));
    }
    Ok(rate)
}

/// `--latency`: a duration (`200ms`, `1.5s`) that fits the fault's u32 milliseconds.
pub fn parse_latency(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration (such as 200ms, 2s)"))?;
    if d.as_millis() > u128::from(u32::MAX) {
        return Err(format!("{text} is too long (at most {}ms)", u32::MAX));
    }
    Ok(d)
}

impl SetArgs {
    /// The fault to send, or why these flags make no sense together.
    pub fn fault(&self) -> anyhow::Result<Fault> {
        let fails_by_default = self.error_code.is_some() || self.apply_then_fail;
        let error_rate = self.error_rate.unwrap_or(if fails_by_default { 1.0 } else { 0.0 });
        let latency_ms = self.latency.map(|d| d.as_millis() as u32).unwrap_or(0);
        if error_rate == 0.0 && fails_by_default {
            bail!("--error-code and --apply-then-fail need a non-zero --error-rate");
        }
        if error_rate == 0.0 && latency_ms == 0 {
            bail!("this fault would do nothing: give --error-rate, --error-code, --apply-then-fail or --latency");
        }
        if self.method.trim().is_empty() {
            bail!("--method is empty: name a method such as payment.v1.Payment/Charge, or *");
        }
        Ok(Fault {
            method: self.method.trim().to_owned(),
            error_rate,
            latency_ms,
            error_code: self.error_code.clone().unwrap_or_default(),
            apply_then_fail: self.apply_then_fail,
            remaining: self.remaining.unwrap_or(0),
        })
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ChaosCommand::Set(args) => set(args).await,
        ChaosCommand::List { target } => list(&target).await,
        ChaosCommand::Clear { method, target } => clear(method, &target).await,
    }
}

async fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let fault = args.fault()?;
    let target = &args.target;
    let mut client = connect(&target.participant).await?;
    if let Err(status) = client.set_fault(SetFaultRequest { fault: Some(fault.clone()) }).await {
        return refused(status, &target.participant, "refused the fault");
    }
    match target.output {
        Output::Json => print_json(&fault_json(&fault))?,
        Output::Human => println!("{}: fault set ({})", fault.method, describe(&fault)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(target: &ParticipantArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&target.participant).await?;
    let faults = match client.list_faults(ListFaultsRequest {}).await {
        Ok(r) => r.into_inner().faults,
        Err(status) => return refused(status, &target.participant, "did not list its faults"),
    };
    match target.output {
        Output::Json => print_json(&Value::Array(faults.iter().map(fault_json).collect()))?,
        Output::Human if faults.is_empty() => println!("no faults on {}", target.participant),
        Output::Human => {
            let mut t = table(&["method", "error rate", "latency", "error code", "apply then fail", "remaining"]);
            for f in &faults {
                let remaining = if f.remaining == 0 { "until cleared".to_owned() } else { f.remaining.to_string() };
                t.add_row(vec![
                    Cell::new(&f.method),
                    Cell::new(f.error_rate).fg(if f.error_rate > 0.0 { Color::Red } else { Color::Reset }),
                    Cell::new(format!("{}ms", f.latency_ms)),
                    Cell::new(error_code(f)),
                    Cell::new(if f.apply_then_fail { "yes" } else { "no" }),
                    Cell::new(remaining),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn clear(method: Option<String>, target: &ParticipantArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&target.participant).await?;
    // Listed first, to say what was cleared (the service does not).
    let before = match client.list_faults(ListFaultsRequest {}).await {
        Ok(r) => r.into_inner().faults,
        Err(status) => return refused(status, &target.participant, "did not list its faults"),
    };
    let method = method.map(|m| m.trim().trim_start_matches('/').to_owned()).filter(|m| !m.is_empty());
    let cleared: Vec<String> =
        before.into_iter().map(|f| f.method).filter(|m| method.as_ref().is_none_or(|only| only == m)).collect();
    if let Err(status) = client.clear_faults(ClearFaultsRequest { method: method.clone().unwrap_or_default() }).await {
        return refused(status, &target.participant, "did not clear its faults");
    }
    match target.output {
        Output::Json => print_json(&json!({ "cleared": cleared }))?,
        Output::Human => match (cleared.is_empty(), &method) {
            (true, Some(m)) => println!("no fault on {m} to clear"),
            (true, None) => println!("no faults on {} to clear", target.participant),
            (false, _) => println!("cleared {}", cleared.join(", ")),
        },
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(participant: &str) -> anyhow::Result<ChaosClient<Channel>> {
    if !participant.contains("://") {
        // `sagaflow-participant` reads SAGAFLOW_CHAOS_PARTICIPANT too, as the kind it serves.
        bail!(
            "{participant:?} is not a participant address such as http://127.0.0.1:50060 (set --participant or SAGAFLOW_CHAOS_PARTICIPANT)"
        );
    }
    let channel = Channel::from_shared(participant.to_owned())
        .with_context(|| format!("{participant:?} is not a participant address such as http://127.0.0.1:50060"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach the participant at {participant} (set --participant or SAGAFLOW_CHAOS_PARTICIPANT)")
        })?;
    Ok(ChaosClient::new(channel))
}

/// The participant answered with an error: say so on stderr, exit 1.
fn refused(status: tonic::Status, participant: &str, what: &str) -> anyhow::Result<ExitCode> {
    if status.code() == tonic::Code::Unimplemented {
        eprintln!("error: {participant} does not serve participants.v1.Chaos (is it a participant?)");
        return Ok(ExitCode::from(1));
    }
    eprintln!("error: {participant} {what}: {} ({:?})", status.message(), status.code());
    for (field, description) in violations(&status) {
        if !status.message().contains(&description) {
            eprintln!("  {field}: {description}");
        }
    }
    Ok(ExitCode::from(1))
}

fn error_code(f: &Fault) -> String {
    if f.error_rate == 0.0 {
        String::new()
    } else if f.error_code.is_empty() {
        "UNAVAILABLE".to_owned()
    } else {
        f.error_code.clone()
    }
}

/// `fails 30% of calls with INTERNAL after applying them, +200ms, next 5 calls`.
fn describe(f: &Fault) -> String {
    let mut parts = Vec::new();
    if f.error_rate > 0.0 {
        let share =
            if f.error_rate >= 1.0 { "every call".to_owned() } else { format!("{}% of calls", f.error_rate * 100.0) };
        let after = if f.apply_then_fail { " after applying them" } else { "" };
        parts.push(format!("fails {share} with {}{after}", paint(&error_code(f), Color::Red)));
    }
    if f.latency_ms > 0 {
        parts.push(format!("+{}ms", f.latency_ms));
    }
    parts.push(if f.remaining == 0 { "until cleared".to_owned() } else { format!("next {} calls", f.remaining) });
    parts.join(", ")
}

fn fault_json(f: &Fault) -> Value {
    json!({
        "method": f.method,
        "errorRate": f.error_rate,
        "latencyMs": f.latency_ms,
        "errorCode": (f.error_rate > 0.0).then(|| error_code(f)),
        "applyThenFail": f.apply_then_fail,
        "remaining": f.remaining,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn set(args: &[&str]) -> Result<SetArgs, clap::Error> {
        let mut all = vec!["sagaflow", "chaos", "set", "--participant", "http://127.0.0.1:50060"];
        all.extend(args);
        match Cli::try_parse_from(all)?.command {
            Command::Chaos(ChaosArgs { command: ChaosCommand::Set(set) }) => Ok(set),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn error_rates_are_probabilities() {
        assert_eq!(parse_error_rate("0"), Ok(0.0));
        assert_eq!(parse_error_rate("0.25"), Ok(0.25));
        assert_eq!(parse_error_rate("1"), Ok(1.0));
        assert!(parse_error_rate("1.5").expect_err("refused").contains("between 0 and 1"));
        assert!(parse_error_rate("-0.1").expect_err("refused").contains("between 0 and 1"));
        assert!(parse_error_rate("NaN").is_err());
        assert!(parse_error_rate("half").expect_err("refused").contains("not a number"));
        let refused = set(&["--method", "*", "--error-rate", "2"]).expect_err("refused");
        assert!(refused.to_string().contains("between 0 and 1"), "{refused}");
    }

    #[test]
    fn latencies_are_durations_in_milliseconds() {
        assert_eq!(parse_latency("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_latency("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_latency("200").is_err(), "a unit is required");
        assert!(parse_latency("100days").expect_err("refused").contains("too long"));
        let fault = set(&["--method", "payment.v1.Payment/Charge", "--latency", "1.5s"]).expect("parsed");
        let fault = fault.fault().expect("a latency-only fault");
        assert_eq!((fault.latency_ms, fault.error_rate), (1500, 0.0));
    }

    #[test]
    fn flags_make_a_fault() {
        let fault = set(&[
            "--method",
            "payment.v1.Payment/Refund",
            "--error-code",
            "INTERNAL",
            "--apply-then-fail",
            "--remaining",
            "3",
        ])
        .expect("parsed")
        .fault()
        .expect("valid");
        assert_eq!(
            fault,
            Fault {
                method: "payment.v1.Payment/Refund".into(),
                error_rate: 1.0,
                latency_ms: 0,
                error_code: "INTERNAL".into(),
                apply_then_fail: true,
                remaining: 3,
            }
        );
        let rate = set(&["--method", "*", "--error-rate", "0.3"]).expect("parsed").fault().expect("valid");
        assert_eq!((rate.error_rate, rate.error_code.as_str()), (0.3, ""));
    }

    #[test]
    fn faults_that_do_nothing_are_refused() {
        let nothing = set(&["--method", "*"]).expect("parsed").fault().expect_err("refused");
        assert!(nothing.to_string().contains("would do nothing"), "{nothing}");
        let zero = set(&["--method", "*", "--error-rate", "0", "--error-code", "INTERNAL"]).expect("parsed");
        assert!(zero.fault().expect_err("refused").to_string().contains("non-zero --error-rate"));
        assert!(set(&["--error-rate", "1"]).is_err(), "--method is required");
    }

    #[test]
    fn the_participant_is_required() {
        // Unless SAGAFLOW_CHAOS_PARTICIPANT is set in the environment of the test run.
        if std::env::var_os("SAGAFLOW_CHAOS_PARTICIPANT").is_none() {
            assert!(Cli::try_parse_from(["sagaflow", "chaos", "list"]).is_err());
        }
        assert!(Cli::try_parse_from(["sagaflow", "chaos", "clear", "--participant", "http://x:1"]).is_ok());
    }
}
