//! Task states and the saga extensions on them: `Resource` (an ARN or
//! `grpc://<participant>/<package.Service>/<Method>`), timeouts and heartbeats, `Compensate`
//! and `SagaRole`, and the checks that concern one Task alone.

use serde_json::Value;

use super::fields::Object;
use super::states::{Compiler, StateSk, TaskSk};
use super::{Loc, suggest};
use crate::errors;
use crate::model::{Compensation, SagaRole, TaskState, Timeout};

const COMPENSATE_FIELDS: &[&str] = &["Resource", "Parameters", "Retry", "TimeoutSeconds", "Comment"];
const SAGA_ROLES: [&str; 4] = ["compensatable", "pivot", "retriable", "readonly"];

impl Compiler<'_, '_> {
    pub(crate) fn task(
        &mut self,
        name: &str,
        object: &Object,
        at: &Loc,
        skeleton: &mut StateSk,
    ) -> Option<Box<TaskState>> {
        let resource = self.ctx.required_string(object, at, "Resource", "a Task state");
        let resource_ok = resource.is_some_and(|r| self.resource(r, &at.key("Resource")));
        let parameters = self.ctx.template(object, at, "Parameters");
        let resilience = self.resilience(object, at, skeleton);
        let timeout = self.timeout(object, at, "TimeoutSeconds", "TimeoutSecondsPath");
        let heartbeat = self.timeout(object, at, "HeartbeatSeconds", "HeartbeatSecondsPath");
        if let (Some(Timeout::Seconds(timeout)), Some(Timeout::Seconds(heartbeat))) = (&timeout, &heartbeat)
            && heartbeat >= timeout
        {
            self.ctx.error(
                "invalid-value",
                &at.key("HeartbeatSeconds"),
                format!("HeartbeatSeconds ({heartbeat}) must be smaller than TimeoutSeconds ({timeout})"),
            );
        }
        let compensate = match object.get("Compensate") {
            Some(value) => self.compensation(value, &at.key("Compensate")),
            None => None,
        };
        let saga_role = self.saga_role(object, at);
        let has_compensate = object.contains_key("Compensate");
        match saga_role {
            Some(SagaRole::Compensatable) if !has_compensate => self.ctx.error(
                "compensatable-without-compensation",
                &at.key("SagaRole"),
                format!(
                    "task \"{name}\" is compensatable but has no Compensate; add \"Compensate\": \
                     {{\"Resource\": ...}} saying how to undo it"
                ),
            ),
            Some(role) if role != SagaRole::Compensatable && has_compensate => self.ctx.error(
                "saga-role-conflict",
                &at.key("SagaRole"),
                format!(
                    "task \"{name}\" has SagaRole \"{}\" and a Compensate; only compensatable \
                     tasks are undone, so drop one of them",
                    role.as_str()
                ),
            ),
            _ => {}
        }
        let role = saga_role.or(has_compensate.then_some(SagaRole::Compensatable));
        let absorbs_failures = resilience
            .retry
            .iter()
            .any(|r| r.max_attempts > 0 && r.error_equals.iter().any(|e| e == errors::ALL || e == errors::TASK_FAILED));
        if resource_ok && role.is_none() && !object.contains_key("SagaRole") {
            self.ctx.warn_key(
                "no-saga-role",
                at,
                format!(
                    "task \"{name}\" has no SagaRole and no Compensate; say whether it is \
                     compensatable (add Compensate), pivot, retriable or readonly"
                ),
            );
        }
        if role == Some(SagaRole::Retriable) && !absorbs_failures {
            self.ctx.warn(
                "retriable-without-retry",
                &at.key("SagaRole"),
                format!(
                    "task \"{name}\" is retriable but no Retry handles States.ALL or \
                     States.TaskFailed with MaxAttempts > 0, so a failure still ends the saga"
                ),
            );
        }
        skeleton.task = Some(TaskSk { role, absorbs_failures });
        Some(Box::new(TaskState {
            resource: resource?.to_string(),
            parameters,
            resilience,
            timeout,
            heartbeat,
            compensate,
            saga_role,
        }))
    }

    fn saga_role(&mut self, object: &Object, at: &Loc) -> Option<SagaRole> {
        let role = self.ctx.string(object, at, "SagaRole")?;
        match role {
            "compensatable" => Some(SagaRole::Compensatable),
            "pivot" => Some(SagaRole::Pivot),
            "retriable" => Some(SagaRole::Retriable),
            "readonly" => Some(SagaRole::Readonly),
            other => {
                let hint = suggest::hint(other, SAGA_ROLES);
                self.ctx.error(
                    "invalid-value",
                    &at.key("SagaRole"),
                    format!(
                        "unknown SagaRole \"{other}\"{hint}; use compensatable, pivot, retriable \
                         or readonly"
                    ),
                );
                None
            }
        }
    }

    /// `grpc://<participant>/<package.Service>/<Method>` or an ARN; false when reported.
    fn resource(&mut self, resource: &str, at: &Loc) -> bool {
        if let Some(rest) = resource.strip_prefix("grpc://") {
            if let Err(why) = check_grpc(rest) {
                self.ctx.error(
                    "invalid-resource",
                    at,
                    format!(
                        "{why}; a gRPC resource reads grpc://<participant>/<package.Service>/<Method>, \
                         e.g. grpc://payment/payment.v1.Payment/Charge"
                    ),
                );
                return false;
            }
        } else if !resource.starts_with("arn:") {
            self.ctx.error(
                "invalid-resource",
                at,
                format!(
                    "Resource \"{resource}\" is neither a gRPC resource \
                     (grpc://<participant>/<package.Service>/<Method>) nor an ARN"
                ),
            );
            return false;
        }
        true
    }

    fn timeout(&mut self, object: &Object, at: &Loc, seconds: &str, path: &str) -> Option<Timeout> {
        if self.ctx.exclusive(object, at, seconds, path) {
            return None;
        }
        if object.contains_key(seconds) {
            return self.ctx.whole(object, at, seconds, 1).map(Timeout::Seconds);
        }
        let value = object.get(path)?;
        self.ctx.reference_path(value, &at.key(path), path).map(Timeout::Path)
    }

    pub(crate) fn compensation(&mut self, value: &Value, at: &Loc) -> Option<Compensation> {
        let Value::Object(object) = value else {
            self.ctx.wrong_type(at, "Compensate", "an object", value);
            return None;
        };
        self.ctx.unknown_fields(object, at, COMPENSATE_FIELDS, "Compensate");
        let resource = self.ctx.required_string(object, at, "Resource", "Compensate");
        if let Some(resource) = resource {
            self.resource(resource, &at.key("Resource"));
        }
        let parameters = self.ctx.template(object, at, "Parameters");
        let retry = self.retriers(object, at);
        let timeout_seconds = self.ctx.whole(object, at, "TimeoutSeconds", 1);
        Some(Compensation { resource: resource?.to_string(), parameters, retry, timeout_seconds })
    }
}

/// Why the part after `grpc://` is not `<participant>/<package.Service>/<Method>`.
fn check_grpc(rest: &str) -> Result<(), String> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [participant, service, method] = parts.as_slice() else {
        return Err(format!("\"grpc://{rest}\" has {} part(s) after grpc:// where three are needed", parts.len()));
    };
    let is_identifier = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let participant_ok = participant.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && participant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !participant_ok {
        return Err(format!(
            "participant alias \"{participant}\" must start with a letter and use only letters, \
             digits, '-' and '_'"
        ));
    }
    if !service.contains('.') || !service.split('.').all(is_identifier) {
        return Err(format!(
            "service \"{service}\" must be a fully-qualified name with its package, such as \
             payment.v1.Payment"
        ));
    }
    if !is_identifier(method) {
        return Err(format!("method \"{method}\" must be a name such as Charge"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_grpc;

    #[test]
    fn grpc_resources() {
        assert!(check_grpc("payment/payment.v1.Payment/Charge").is_ok());
        assert!(check_grpc("payment-eu/payment.v1.Payment/Charge").is_ok());
        assert!(check_grpc("payment/Payment/Charge").is_err());
        assert!(check_grpc("payment/payment.v1.Payment").is_err());
        assert!(check_grpc("/payment.v1.Payment/Charge").is_err());
        assert!(check_grpc("payment/payment.v1.Payment/Charge/x").is_err());
        assert!(check_grpc("payment/payment..Payment/Charge").is_err());
    }
}
