//! Conversions from stored records to API messages.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use sagaflow_language::interpreter::saga::StepStatus;
use sagaflow_language::interpreter::{Execution as Interpreter, HistoryEvent};
use sagaflow_proto::sagaflow::v1 as pb;

use crate::store::{DefinitionRecord, ExecutionRecord};

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn from_timestamp(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
}

fn json_text(value: &Option<serde_json::Value>) -> String {
    value.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

pub fn execution(r: &ExecutionRecord) -> pb::Execution {
    pb::Execution {
        execution_id: r.id.to_string(),
        definition_name: r.definition_name.clone(),
        definition_version: r.definition_version,
        status: r.status.as_str().to_owned(),
        input_json: r.input.to_string(),
        output_json: json_text(&r.output),
        error: r.error.clone().unwrap_or_default(),
        cause: r.cause.clone().unwrap_or_default(),
        start_time: Some(timestamp(r.started_at)),
        stop_time: r.stopped_at.map(timestamp),
        idempotency_key: r.idempotency_key.clone().unwrap_or_default(),
        redrive_count: r.redrive_count,
        last_event_id: r.last_event_id,
    }
}

/// The rollback plan kept in the execution's snapshot, as API messages.
pub fn compensations(r: &ExecutionRecord) -> Vec<pb::CompensationStep> {
    let Ok(state) = serde_json::from_value::<Interpreter>(r.snapshot.clone()) else { return Vec::new() };
    let Some(rollback) = state.rollback() else { return Vec::new() };
    rollback
        .steps
        .iter()
        .map(|s| pb::CompensationStep {
            state: s.owed.state.clone(),
            scope: s.owed.scope.clone(),
            forward_key: s.owed.forward_key.clone(),
            status: match &s.status {
                StepStatus::Waiting => "WAITING",
                StepStatus::Running { .. } => "RUNNING",
                StepStatus::Backoff { .. } => "BACKOFF",
                StepStatus::Succeeded => "SUCCEEDED",
                StepStatus::Stuck => "STUCK",
                StepStatus::Skipped { .. } => "SKIPPED",
                StepStatus::Resolved { .. } => "RESOLVED",
            }
            .to_owned(),
            attempts: s.attempts,
            last_error: s.last_error.clone().unwrap_or_default(),
            last_cause: s.last_cause.clone().unwrap_or_default(),
            outcome_unknown: s.owed.outcome_unknown,
        })
        .collect()
}

pub fn history_event(e: &HistoryEvent) -> pb::HistoryEvent {
    pb::HistoryEvent {
        id: e.id,
        timestamp: DateTime::<Utc>::from_timestamp_millis(e.timestamp_ms).map(timestamp),
        r#type: e.kind.as_str().to_owned(),
        state: e.state.clone().unwrap_or_default(),
        details_json: if e.details.is_null() { String::new() } else { e.details.to_string() },
        cause_json: e.cause.as_ref().and_then(|c| serde_json::to_string(c).ok()).unwrap_or_default(),
    }
}

pub fn definition_summary(d: &DefinitionRecord) -> pb::DefinitionSummary {
    pb::DefinitionSummary {
        name: d.name.clone(),
        version: d.version,
        hash: d.hash.clone(),
        created_at: Some(timestamp(d.created_at)),
    }
}

pub fn diagnostic(d: &sagaflow_language::Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: if d.is_error() { "error" } else { "warning" }.to_owned(),
        code: d.code.to_owned(),
        line: d.line as u32,
        column: d.column as u32,
        pointer: d.pointer.clone(),
        state: d.state.clone().unwrap_or_default(),
        message: d.message.clone(),
    }
}
