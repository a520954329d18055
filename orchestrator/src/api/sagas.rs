//! `sagaflow.v1.SagaService`: definitions, executions, histories and operator actions.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use sagaflow_language::interpreter::{Event, Status as ExecStatus};
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::saga_service_server::SagaService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::status::{self, invalid};
use super::{convert, input};
use crate::engine::{Engine, StartRequest, settled};
use crate::store::ExecutionFilter;
use crate::telemetry::TraceParent;

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

    /// The execution `execution_id` names (an id or a unique prefix of one).
    async fn resolve(&self, id_or_prefix: &str) -> Result<Uuid, Status> {
        input::execution_ref("execution_id", id_or_prefix).map_err(status::input)?;
        self.engine.resolve(id_or_prefix).await.map_err(status::engine)
    }

    async fn record(&self, id_or_prefix: &str) -> Result<crate::store::ExecutionRecord, Status> {
        let id = self.resolve(id_or_prefix).await?;
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

/// How long to wait: the caller's gRPC deadline if it set one (minus a margin), else the default.
pub fn wait_limit<T>(request: &Request<T>) -> Duration {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(input::grpc_timeout)
        .map(|d| d.saturating_sub(Duration::from_millis(200)).max(Duration::from_millis(50)))
        .unwrap_or(DEFAULT_WAIT)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::HistoryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SagaService for Sagas {
    async fn register_definition(
        &self,
        request: Request<pb::RegisterDefinitionRequest>,
    ) -> Result<Response<pb::RegisterDefinitionResponse>, Status> {
        let r = request.into_inner();
        input::definition_name("name", &r.name).map_err(status::input)?;
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
        if !r.name.is_empty() {
            input::definition_name("name", &r.name).map_err(status::input)?;
        }
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
        input::definition_name("name", &r.name).map_err(status::input)?;
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
        // The caller's W3C trace context becomes the parent of the saga's trace.
        let trace_parent = TraceParent::from_metadata(request.metadata());
        let r = request.into_inner();
        let input::StartExecution { input, execution_id } = input::start_execution(&r).map_err(status::input)?;
        let started = self
            .engine
            .start_traced(
                StartRequest {
                    definition: r.definition_name,
                    version: (r.definition_version != 0).then_some(r.definition_version),
                    input,
                    execution_id,
                    idempotency_key: (!r.idempotency_key.is_empty()).then_some(r.idempotency_key),
                },
                trace_parent,
            )
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
                invalid(
                    format!("unknown status {}", input::shown(s)),
                    &[("statuses".into(), format!("one of {}", status_names()))],
                )
            })?);
        }
        let limit = match r.page_size {
            0 => 50,
            n => n.min(1000),
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(input::page_token(token).map_err(status::input)?),
        };
        if !r.definition_name.is_empty() {
            input::definition_name("definition_name", &r.definition_name).map_err(status::input)?;
        }
        if !r.id_prefix.is_empty() {
            input::execution_ref("id_prefix", &r.id_prefix).map_err(status::input)?;
        }
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
        let id = self.resolve(&r.execution_id).await?;
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
        let id = self.resolve(&r.execution_id).await?;
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
        input::state_name("from_state", &r.from_state).map_err(status::input)?;
        let original = self.resolve(&r.execution_id).await?;
        let forked = self.engine.fork(original, r.from_state.trim()).await.map_err(status::engine)?;
        Ok(Response::new(pb::ForkExecutionResponse { execution: Some(self.execution(forked.id).await?) }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let r = request.into_inner();
        input::reason("reason", &r.reason).map_err(status::input)?;
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
        input::reason("reason", &r.reason).map_err(status::input)?;
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
        input::reason("reason", &r.reason).map_err(status::input)?;
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
