//! The API's redaction: decorators around `SagaService` and `OrderService` that mask every
//! payload an answer carries (execution input and output, history event details and causes)
//! at the server's configured paths, and scrub the masked values out of the answer's other
//! strings (error causes, copies). The services themselves, the engine and the database keep
//! the real values; this is the last step before the wire.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::order_service_server::OrderService;
use sagaflow_proto::sagaflow::v1::saga_service_server::SagaService;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::redact::{Redactor, Secrets};
use crate::engine::Engine;

/// Masks API messages with a [`Redactor`]: shared by the server's decorators below and by the
/// CLI, which masks what it prints with its own list.
#[derive(Debug, Clone, Default)]
pub struct MessageMasker {
    redactor: Redactor,
}

impl MessageMasker {
    pub fn new(redactor: Redactor) -> Self {
        MessageMasker { redactor }
    }

    pub fn on(&self) -> bool {
        !self.redactor.is_empty()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Mask a payload given as JSON text, with the secrets already known; returns its own.
    fn payload(&self, text: &mut String, known: &Secrets) -> Secrets {
        let Ok(mut value) = serde_json::from_str::<Value>(text) else {
            *text = known.scrub(text);
            return Secrets::default();
        };
        let mut secrets = self.redactor.mask(&mut value);
        secrets.extend(known.clone());
        secrets.scrub_value(&mut value);
        *text = value.to_string();
        secrets
    }

    /// Mask an execution's input and output, and scrub what they hid (and `known`) from its
    /// error and cause; returns every secret found.
    pub fn execution(&self, e: &mut pb::Execution, known: &Secrets) -> Secrets {
        if !self.on() {
            return Secrets::default();
        }
        // The input's secrets may sit in copies in the output and in free text, and the other
        // way round: gather both first.
        let mut secrets = known.clone();
        for text in [&e.input_json, &e.output_json] {
            if let Ok(value) = serde_json::from_str::<Value>(text) {
                secrets.extend(self.redactor.secrets(&value));
            }
        }
        for text in [&mut e.input_json, &mut e.output_json] {
            if !text.is_empty() {
                self.payload(text, &secrets);
            }
        }
        e.error = secrets.scrub(&e.error);
        e.cause = secrets.scrub(&e.cause);
        secrets
    }

    /// Mask a DescribeExecution answer: the execution, the summary fields that repeat it, and
    /// the compensations' causes.
    pub fn described(&self, r: &mut pb::DescribeExecutionResponse, known: &Secrets) {
        if !self.on() {
            return;
        }
        let mut secrets = known.clone();
        if let Some(e) = r.execution.as_mut() {
            secrets.extend(self.execution(e, known));
            r.input_json.clone_from(&e.input_json);
            r.output_json.clone_from(&e.output_json);
            r.error.clone_from(&e.error);
            r.cause.clone_from(&e.cause);
        } else {
            for text in [&mut r.input_json, &mut r.output_json] {
                if !text.is_empty() {
                    secrets.extend(self.payload(text, known));
                }
            }
            r.error = secrets.scrub(&r.error);
            r.cause = secrets.scrub(&r.cause);
        }
        for c in &mut r.compensations {
            c.last_cause = secrets.scrub(&c.last_cause);
        }
    }

    /// Mask a whole history: a secret first seen in a later event (a participant's answer) is
    /// scrubbed from the earlier ones too.
    pub fn history(&self, events: &mut [pb::HistoryEvent], known: &Secrets) {
        if !self.on() {
            return;
        }
        let mut secrets = known.clone();
        for e in events.to_vec().iter_mut() {
            secrets.extend(self.event(e, &secrets));
        }
        for e in events {
            self.event(e, &secrets);
        }
    }

    /// Mask one history event's payloads and scrub it; returns every secret found.
    pub fn event(&self, e: &mut pb::HistoryEvent, known: &Secrets) -> Secrets {
        if !self.on() {
            return Secrets::default();
        }
        let mut details = serde_json::from_str::<Value>(&e.details_json).ok();
        let mut cause = serde_json::from_str::<Value>(&e.cause_json).ok();
        let mut secrets = known.clone();
        for part in [details.as_mut(), cause.as_mut()].into_iter().flatten() {
            secrets.extend(self.redactor.mask_event_part(part));
        }
        for (part, text) in [(details, &mut e.details_json), (cause, &mut e.cause_json)] {
            match part {
                Some(mut value) => {
                    secrets.scrub_value(&mut value);
                    *text = value.to_string();
                }
                None => *text = secrets.scrub(text),
            }
        }
        secrets
    }

    pub fn executions<'a>(&self, list: impl IntoIterator<Item = &'a mut pb::Execution>) {
        for e in list {
            self.execution(e, &Secrets::default());
        }
    }
}

/// The server's masking: a [`MessageMasker`] that also reads an execution's stored input,
/// so a history page or a cause is scrubbed of secrets it does not itself show.
#[derive(Debug, Clone)]
pub struct Masking {
    masker: MessageMasker,
    engine: Engine,
}

impl Masking {
    pub fn new(redactor: Redactor, engine: Engine) -> Self {
        Masking { masker: MessageMasker::new(redactor), engine }
    }

    fn on(&self) -> bool {
        self.masker.on()
    }

    /// The values hidden in a stored execution's input and output.
    async fn stored_secrets(&self, id_or_prefix: &str) -> Secrets {
        let Ok(id) = self.engine.resolve(id_or_prefix).await else { return Secrets::default() };
        let Ok(Some(record)) = self.engine.store().get_execution(id).await else { return Secrets::default() };
        let mut secrets = self.masker.redactor.secrets(&record.input);
        if let Some(output) = &record.output {
            secrets.extend(self.masker.redactor.secrets(output));
        }
        secrets
    }
}

impl std::ops::Deref for Masking {
    type Target = MessageMasker;

    fn deref(&self) -> &MessageMasker {
        &self.masker
    }
}

/// `SagaService` with every answer masked.
#[derive(Debug, Clone)]
pub struct RedactedSagas<S> {
    inner: S,
    masking: Masking,
}

impl<S> RedactedSagas<S> {
    pub fn new(inner: S, masking: Masking) -> Self {
        RedactedSagas { inner, masking }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::HistoryEvent, Status>> + Send>>;

#[tonic::async_trait]
impl<S: SagaService> SagaService for RedactedSagas<S> {
    async fn register_definition(
        &self,
        request: Request<pb::RegisterDefinitionRequest>,
    ) -> Result<Response<pb::RegisterDefinitionResponse>, Status> {
        self.inner.register_definition(request).await
    }

    async fn list_definitions(
        &self,
        request: Request<pb::ListDefinitionsRequest>,
    ) -> Result<Response<pb::ListDefinitionsResponse>, Status> {
        self.inner.list_definitions(request).await
    }

    async fn get_definition(
        &self,
        request: Request<pb::GetDefinitionRequest>,
    ) -> Result<Response<pb::GetDefinitionResponse>, Status> {
        self.inner.get_definition(request).await
    }

    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let mut response = self.inner.start_execution(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }

    async fn describe_execution(
        &self,
        request: Request<pb::DescribeExecutionRequest>,
    ) -> Result<Response<pb::DescribeExecutionResponse>, Status> {
        let mut response = self.inner.describe_execution(request).await?;
        if !self.masking.on() {
            return Ok(response);
        }
        let known = self.masking.stored_secrets(&response.get_ref().execution_id).await;
        self.masking.described(response.get_mut(), &known);
        Ok(response)
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let mut response = self.inner.list_executions(request).await?;
        self.masking.executions(response.get_mut().executions.iter_mut());
        Ok(response)
    }

    async fn get_execution_history(
        &self,
        request: Request<pb::GetExecutionHistoryRequest>,
    ) -> Result<Response<pb::GetExecutionHistoryResponse>, Status> {
        let id = request.get_ref().execution_id.clone();
        let mut response = self.inner.get_execution_history(request).await?;
        if !self.masking.on() {
            return Ok(response);
        }
        let known = self.masking.stored_secrets(&id).await;
        self.masking.history(&mut response.get_mut().events, &known);
        Ok(response)
    }

    type WatchExecutionStream = EventStream;

    async fn watch_execution(
        &self,
        request: Request<pb::WatchExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        let id = request.get_ref().execution_id.clone();
        let response = self.inner.watch_execution(request).await?;
        if !self.masking.on() {
            return Ok(response.map(|s| Box::pin(s) as EventStream));
        }
        let mut known = self.masking.stored_secrets(&id).await;
        let masking = self.masking.clone();
        Ok(response.map(move |stream| {
            Box::pin(stream.map(move |item| {
                item.map(|mut e| {
                    known.extend(masking.event(&mut e, &known));
                    e
                })
            })) as EventStream
        }))
    }

    async fn redrive_execution(
        &self,
        request: Request<pb::RedriveExecutionRequest>,
    ) -> Result<Response<pb::RedriveExecutionResponse>, Status> {
        let mut response = self.inner.redrive_execution(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }

    async fn fork_execution(
        &self,
        request: Request<pb::ForkExecutionRequest>,
    ) -> Result<Response<pb::ForkExecutionResponse>, Status> {
        let mut response = self.inner.fork_execution(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let mut response = self.inner.cancel_execution(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }

    async fn terminate_execution(
        &self,
        request: Request<pb::TerminateExecutionRequest>,
    ) -> Result<Response<pb::TerminateExecutionResponse>, Status> {
        let mut response = self.inner.terminate_execution(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }

    async fn repair_compensation(
        &self,
        request: Request<pb::RepairCompensationRequest>,
    ) -> Result<Response<pb::RepairCompensationResponse>, Status> {
        let mut response = self.inner.repair_compensation(request).await?;
        self.masking.executions(response.get_mut().execution.as_mut());
        Ok(response)
    }
}

/// `OrderService` with the answer's output and cause masked.
#[derive(Debug, Clone)]
pub struct RedactedOrders<S> {
    inner: S,
    masking: Masking,
}

impl<S> RedactedOrders<S> {
    pub fn new(inner: S, masking: Masking) -> Self {
        RedactedOrders { inner, masking }
    }
}

#[tonic::async_trait]
impl<S: OrderService> OrderService for RedactedOrders<S> {
    async fn start_order(
        &self,
        request: Request<pb::StartOrderRequest>,
    ) -> Result<Response<pb::StartOrderResponse>, Status> {
        let mut response = self.inner.start_order(request).await?;
        if !self.masking.on() {
            return Ok(response);
        }
        let r = response.get_mut();
        let known = self.masking.stored_secrets(&r.execution_id).await;
        if !r.output_json.is_empty() {
            self.masking.payload(&mut r.output_json, &known);
        }
        r.error = known.scrub(&r.error);
        r.cause = known.scrub(&r.cause);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> MessageMasker {
        MessageMasker::new(Redactor::new(&["$..paymentToken"]).expect("path"))
    }

    #[test]
    fn an_execution_is_masked_and_its_cause_scrubbed() {
        let mut e = pb::Execution {
            input_json: r#"{"orderId":"o-1","paymentToken":"tok_decline"}"#.into(),
            output_json: r#"{"echo":"tok_decline"}"#.into(),
            error: "Payment.CardDeclined".into(),
            cause: "declined (demo token tok_decline)".into(),
            ..Default::default()
        };
        masker().execution(&mut e, &Secrets::default());
        assert_eq!(e.input_json, r#"{"orderId":"o-1","paymentToken":"***"}"#);
        assert_eq!(e.output_json, r#"{"echo":"***"}"#);
        assert_eq!(e.cause, "declined (demo token ***)");
        let mut plain = pb::Execution { input_json: r#"{"paymentToken":"tok_ok"}"#.into(), ..Default::default() };
        MessageMasker::default().execution(&mut plain, &Secrets::default());
        assert_eq!(plain.input_json, r#"{"paymentToken":"tok_ok"}"#, "an empty list masks nothing");
    }

    #[test]
    fn a_history_is_scrubbed_of_secrets_seen_in_any_event() {
        let event = |kind: &str, details: &str, cause: &str| pb::HistoryEvent {
            r#type: kind.into(),
            details_json: details.into(),
            cause_json: cause.into(),
            ..Default::default()
        };
        let mut events = vec![
            event("TaskFailed", r#"{"error":"Payment.CardDeclined","cause":"token tok_secret refused"}"#, ""),
            event(
                "ExecutionStarted",
                r#"{"input":{"paymentToken":"tok_secret"}}"#,
                r#"{"type":"Started","input":{"paymentToken":"tok_secret"}}"#,
            ),
            event("TaskScheduled", r#"{"input":{"token":"tok_secret"}}"#, ""),
        ];
        masker().history(&mut events, &Secrets::default());
        for e in &events {
            assert!(!format!("{e:?}").contains("tok_secret"), "{e:?}");
        }
        assert_eq!(events[1].cause_json, r#"{"type":"Started","input":{"paymentToken":"***"}}"#);
        assert_eq!(events[0].details_json, r#"{"error":"Payment.CardDeclined","cause":"token *** refused"}"#);
    }

    #[test]
    fn a_description_repeats_the_masked_execution() {
        let input = r#"{"paymentToken":"tok_secret"}"#;
        let mut r = pb::DescribeExecutionResponse {
            input_json: input.into(),
            cause: "tok_secret".into(),
            execution: Some(pb::Execution {
                input_json: input.into(),
                cause: "tok_secret".into(),
                ..Default::default()
            }),
            compensations: vec![pb::CompensationStep {
                last_cause: "refund of tok_secret failed".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        masker().described(&mut r, &Secrets::default());
        assert!(!format!("{r:?}").contains("tok_secret"), "{r:?}");
        assert_eq!(r.input_json, r#"{"paymentToken":"***"}"#);
    }
}
