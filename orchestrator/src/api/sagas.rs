//! `sagaflow.v1.SagaService`: definitions, executions, histories and operator actions.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use sagaflow_language::interpreter::{Event, PAYLOAD_LIMIT_BYTES, Status as ExecStatus};
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::saga_service_server::SagaService;
use serde_json::Value;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert;
use super::status::{self, invalid};
use crate::engine::{Engine, StartRequest, settled};
use crate::store::ExecutionFilter;

/// How long `wait_for_completion` waits when the caller set no deadline.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Sagas {
    engine: Engine,
}

impl Sagas {
    pub fn new(engine: Engine) -> Self {
        Sagas { engine }
    }

    async fn record(&self, id_or_prefix: &str) -> Result<crate::store::ExecutionRecord, Status> {
        let id = self.engine.resolve(id_or_prefix).await.map_err(status::engine)?;
        self.engine
            .store()
            .get_execution(id)
            .await
            .map_err(status::store)?
            .ok_or_else(|| Status::not_found(format!("execution {id} does not exist")))
    }

    async fn execution(&self, id: Uuid) -> Result<pb::Execution, Status> {
        let record = self.engine.store().get_execution(id).await.map_err(status::store)?;
        record
            .map(|r| convert::execution(&r))
            .ok_or_else(|| Status::not_found(format!("execution {id} does not exist")))
    }
}

/// Parse a JSON payload field, enforcing the payload limit with the sizes in the message.
pub fn parse_payload(field: &str, text: &str) -> Result<Value, Status> {
    if text.len() > PAYLOAD_LIMIT_BYTES {
        return Err(invalid(
            format!("{field} is {} bytes, over the limit of {PAYLOAD_LIMIT_BYTES} bytes (256 KiB)", text.len()),
            &[(field.into(), format!("at most {PAYLOAD_LIMIT_BYTES} bytes, got {}", text.len()))],
        ));
    }
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| {
        invalid(
            format!("{field} is not valid JSON: {e}"),
            &[(field.into(), format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()))],
        )
    })
}

/// How long to wait: the caller's gRPC deadline if it set one (minus a margin), else the default.
pub fn wait_limit<T>(request: &Request<T>) -> Duration {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|d| d.saturating_sub(Duration::from_millis(200)).max(Duration::from_millis(50)))
        .unwrap_or(DEFAULT_WAIT)
}

fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::HistoryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SagaService for Sagas {
    async fn register_definition(
        &self,
        request: Request<pb::RegisterDefinitionRequest>,
    ) -> Result<Response<pb::RegisterDefinitionResponse>, Status> {
        let r = request.into_inner();
        let registered = self.engine.definitions().register(&r.name, &r.content).await.map_err(status::register)?;
        Ok(Response::new(pb::RegisterDefinitionResponse {
            definition: Some(convert::definition_summary(&registered.record)),
            created: registered.created,
            warnings: registered.warnings.iter().map(convert::diagnostic).collect(),
        }))
    }

    async fn list_definitions(
        &self,
        request: Request<pb::ListDefinitionsRequest>,
    ) -> Result<Response<pb::ListDefinitionsResponse>, Status> {
        let r = request.into_inner();
        let name = (!r.name.is_empty()).then_some(r.name.as_str());
        let records = self.engine.store().list_definitions(name).await.map_err(status::store)?;
        Ok(Response::new(pb::ListDefinitionsResponse {
            definitions: records.iter().map(convert::definition_summary).collect(),
        }))
    }

    async fn get_definition(
        &self,
        request: Request<pb::GetDefinitionRequest>,
    ) -> Result<Response<pb::GetDefinitionResponse>, Status> {
        let r = request.into_inner();
        let version = (r.version != 0).then_some(r.version);
        let record = self.engine.definitions().record(&r.name, version).await.map_err(status::engine)?;
        Ok(Response::new(pb::GetDefinitionResponse {
            definition: Some(pb::Definition {
                summary: Some(convert::definition_summary(&record)),
                content: record.content,
            }),
        }))
    }

    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let limit = wait_limit(&request);
        let r = request.into_inner();
        if r.definition_name.is_empty() {
            return Err(invalid("definition_name is required", &[("definition_name".into(), "required".into())]));
        }
        let input = parse_payload("input_json", &r.input_json)?;
        let execution_id = match r.execution_id.as_str() {
            "" => None,
            text => Some(Uuid::parse_str(text).map_err(|e| {
                invalid(
                    format!("execution_id {text:?} is not a UUID: {e}"),
                    &[("execution_id".into(), "a UUID such as 0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d".into())],
                )
            })?),
        };
        let started = self
            .engine
            .start(StartRequest {
                definition: r.definition_name,
                version: (r.definition_version != 0).then_some(r.definition_version),
                input,
                execution_id,
                idempotency_key: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
            })
            .await
            .map_err(status::engine)?;
        if r.wait_for_completion {
            self.engine.wait(started.id, limit).await.map_err(status::engine)?;
        }
        Ok(Response::new(pb::StartExecutionResponse {
            execution: Some(self.execution(started.id).await?),
            created: started.created,
        }))
    }

    async fn describe_execution(
        &self,
        request: Request<pb::DescribeExecutionRequest>,
    ) -> Result<Response<pb::DescribeExecutionResponse>, Status> {
        let record = self.record(&request.into_inner().execution_id).await?;
        let execution = convert::execution(&record);
        Ok(Response::new(pb::DescribeExecutionResponse {
            execution_id: execution.execution_id.clone(),
            definition_name: execution.definition_name.clone(),
            status: execution.status.clone(),
            input_json: execution.input_json.clone(),
            output_json: execution.output_json.clone(),
            error: execution.error.clone(),
            cause: execution.cause.clone(),
            compensations: convert::compensations(&record),
            execution: Some(execution),
        }))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let r = request.into_inner();
        let mut statuses = Vec::new();
        for s in &r.statuses {
            statuses.push(ExecStatus::parse(s).ok_or_else(|| {
                invalid(format!("unknown status {s:?}"), &[("statuses".into(), format!("one of {}", status_names()))])
            })?);
        }
        let limit = match r.page_size {
            0 => 50,
            n => n.min(1000),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(decode_page_token(token).ok_or_else(|| {
                invalid(
                    "page_token is not one this server issued",
                    &[("page_token".into(), "use next_page_token as given".into())],
                )
            })?),
        };
        let filter = ExecutionFilter {
            statuses,
            definition_name: (!r.definition_name.is_empty()).then_some(r.definition_name),
            started_after: r.started_after.as_ref().and_then(convert::from_timestamp),
            started_before: r.started_before.as_ref().and_then(convert::from_timestamp),
            id_prefix: (!r.id_prefix.is_empty()).then(|| r.id_prefix.to_ascii_lowercase()),
            after,
            limit: limit + 1,
        };
        let mut records = self.engine.store().list_executions(&filter).await.map_err(status::store)?;
        let next_page_token = if records.len() > limit as usize {
            records.truncate(limit as usize);
            records.last().map(|r| format!("{}:{}", r.started_at.timestamp_micros(), r.id)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: records.iter().map(convert::execution).collect(),
            next_page_token,
        }))
    }

    async fn get_execution_history(
        &self,
        request: Request<pb::GetExecutionHistoryRequest>,
    ) -> Result<Response<pb::GetExecutionHistoryResponse>, Status> {
        let r = request.into_inner();
        let id = self.engine.resolve(&r.execution_id).await.map_err(status::engine)?;
        if self.engine.store().get_execution(id).await.map_err(status::store)?.is_none() {
            return Err(Status::not_found(format!("execution {id} does not exist")));
        }
        let limit = match r.page_size {
            0 => 1000,
            n => n.min(5000),
        };
        let mut events = self.engine.store().history(id, r.after_event_id, limit + 1).await.map_err(status::store)?;
        let has_more = events.len() > limit as usize;
        events.truncate(limit as usize);
        Ok(Response::new(pb::GetExecutionHistoryResponse {
            events: events.iter().map(convert::history_event).collect(),
            has_more,
        }))
    }

    type WatchExecutionStream = WatchStream;

    async fn watch_execution(
        &self,
        request: Request<pb::WatchExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        let r = request.into_inner();
        let id = self.engine.resolve(&r.execution_id).await.map_err(status::engine)?;
        let store = self.engine.store().clone();
        if store.get_execution(id).await.map_err(status::store)?.is_none() {
            return Err(Status::not_found(format!("execution {id} does not exist")));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let mut after = r.after_event_id;
        tokio::spawn(async move {
            loop {
                let events = match store.history(id, after, 500).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(status::store(e))).await;
                        return;
                    }
                };
                let caught_up = events.len() < 500;
                for e in &events {
                    after = e.id;
                    if tx.send(Ok(convert::history_event(e))).await.is_err() {
                        return;
                    }
                }
                if caught_up {
                    match store.get_execution(id).await {
                        Ok(Some(record)) if settled(record.status) && record.last_event_id <= after => return,
                        Ok(_) => {}
                        Err(e) => {
                            let _ = tx.send(Err(status::store(e))).await;
                            return;
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn redrive_execution(
        &self,
        request: Request<pb::RedriveExecutionRequest>,
    ) -> Result<Response<pb::RedriveExecutionResponse>, Status> {
        let record = self.record(&request.into_inner().execution_id).await?;
        let state: sagaflow_language::interpreter::Execution = serde_json::from_value(record.snapshot.clone())
            .map_err(|_| Status::internal("the execution's stored state is unreadable; see the server log"))?;
        if !state.can_redrive() {
            let why = if record.status == ExecStatus::Failed {
                "its failure did not come from a task (a Fail state or a data error fails again the same way)"
            } else {
                "only a FAILED execution can be redriven (a compensated one has been undone: start it again instead)"
            };
            return Err(Status::failed_precondition(format!("execution {} is {}; {why}", record.id, record.status)));
        }
        self.engine.request(record.id, Event::Redrive).await.map_err(status::engine)?;
        Ok(Response::new(pb::RedriveExecutionResponse { execution: Some(self.execution(record.id).await?) }))
    }

    async fn fork_execution(
        &self,
        request: Request<pb::ForkExecutionRequest>,
    ) -> Result<Response<pb::ForkExecutionResponse>, Status> {
        let r = request.into_inner();
        if r.from_state.trim().is_empty() {
            return Err(invalid("from_state is required", &[("from_state".into(), "a top-level state name".into())]));
        }
        let original = self.engine.resolve(&r.execution_id).await.map_err(status::engine)?;
        let forked = self.engine.fork(original, r.from_state.trim()).await.map_err(status::engine)?;
        Ok(Response::new(pb::ForkExecutionResponse { execution: Some(self.execution(forked.id).await?) }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let r = request.into_inner();
        let record = self.record(&r.execution_id).await?;
        if record.status != ExecStatus::Running {
            return Err(Status::failed_precondition(format!(
                "execution {} is {}; only a RUNNING execution can be cancelled",
                record.id, record.status
            )));
        }
        let reason = (!r.reason.is_empty()).then_some(r.reason);
        self.engine.request(record.id, Event::Cancel { reason }).await.map_err(status::engine)?;
        Ok(Response::new(pb::CancelExecutionResponse { execution: Some(self.execution(record.id).await?) }))
    }

    async fn terminate_execution(
        &self,
        request: Request<pb::TerminateExecutionRequest>,
    ) -> Result<Response<pb::TerminateExecutionResponse>, Status> {
        let r = request.into_inner();
        let record = self.record(&r.execution_id).await?;
        if record.status.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "execution {} has already ended ({})",
                record.id, record.status
            )));
        }
        let reason = (!r.reason.is_empty()).then_some(r.reason);
        self.engine.request(record.id, Event::Terminate { reason }).await.map_err(status::engine)?;
        Ok(Response::new(pb::TerminateExecutionResponse { execution: Some(self.execution(record.id).await?) }))
    }

    async fn repair_compensation(
        &self,
        request: Request<pb::RepairCompensationRequest>,
    ) -> Result<Response<pb::RepairCompensationResponse>, Status> {
        let r = request.into_inner();
        let record = self.record(&r.execution_id).await?;
        if record.status != ExecStatus::CompensationStuck {
            return Err(Status::failed_precondition(format!(
                "execution {} is {}; only an execution in COMPENSATION_STUCK can be repaired",
                record.id, record.status
            )));
        }
        let needs_reason = || {
            if r.reason.trim().is_empty() {
                Err(invalid("a reason is required", &[("reason".into(), "say why, for the audit trail".into())]))
            } else {
                Ok(r.reason.clone())
            }
        };
        let event = match pb::repair_compensation_request::Action::try_from(r.action) {
            Ok(pb::repair_compensation_request::Action::Retry) => Event::RetryCompensation,
            Ok(pb::repair_compensation_request::Action::Skip) => Event::SkipCompensation { reason: needs_reason()? },
            Ok(pb::repair_compensation_request::Action::Resolve) => {
                Event::ResolveCompensation { reason: needs_reason()? }
            }
            _ => return Err(invalid("action is required", &[("action".into(), "RETRY, SKIP or RESOLVE".into())])),
        };
        self.engine.request(record.id, event).await.map_err(status::engine)?;
        Ok(Response::new(pb::RepairCompensationResponse { execution: Some(self.execution(record.id).await?) }))
    }
}

fn status_names() -> String {
    ExecStatus::ALL.iter().filter(|s| **s != ExecStatus::Pending).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn decode_page_token(token: &str) -> Option<(chrono::DateTime<chrono::Utc>, Uuid)> {
    let (micros, id) = token.split_once(':')?;
    let at = chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::parse_str(id).ok()?))
}
