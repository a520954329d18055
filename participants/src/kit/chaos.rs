//! Runtime fault injection (the `participants.v1.Chaos` service) as a tower layer around the
//! business services, so the services themselves know nothing about it.
//!
//! A fault names a method (`payment.v1.Payment/Charge`) or `*`. Each matching call first
//! waits `latency_ms`, then fails with probability `error_rate`: either before it is handled
//! (nothing applied) or, with `apply_then_fail`, after it was handled and committed (the
//! caller cannot tell whether it was applied). `remaining` N limits the fault to the next N
//! matching calls. `*` skips the read-only `Get*` methods, which tests use to check state;
//! name such a method exactly to break it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use sagaflow_proto::participants::v1::chaos_server::Chaos;
use sagaflow_proto::participants::v1::{
    ClearFaultsRequest, ClearFaultsResponse, Fault, ListFaultsRequest, ListFaultsResponse, SetFaultRequest,
    SetFaultResponse,
};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};
use tower::{Layer, Service};

use super::error::{Refusal, ServiceError};

/// The method pattern that matches every business method except the `Get*` reads.
pub const ANY_METHOD: &str = "*";

/// How an injected failure looks to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A plain gRPC status with this code.
    Code(Code),
    /// A business error (`FailedPrecondition` with `ErrorInfo` reason = this name).
    Business(String),
}

impl Failure {
    /// Parses `Fault.error_code`: empty means `UNAVAILABLE`; a gRPC code name in any case,
    /// with or without underscores (`DEADLINE_EXCEEDED`, `DeadlineExceeded`); or a business
    /// error name, recognised by its dot (`Payment.CardDeclined`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return Some(Failure::Code(Code::Unavailable));
        }
        if text.contains('.') {
            return Some(Failure::Business(text.to_owned()));
        }
        let normalized: String = text.chars().filter(|c| *c != '_').map(|c| c.to_ascii_uppercase()).collect();
        let code = match normalized.as_str() {
            "CANCELLED" => Code::Cancelled,
            "UNKNOWN" => Code::Unknown,
            "INVALIDARGUMENT" => Code::InvalidArgument,
            "DEADLINEEXCEEDED" => Code::DeadlineExceeded,
            "NOTFOUND" => Code::NotFound,
            "ALREADYEXISTS" => Code::AlreadyExists,
            "PERMISSIONDENIED" => Code::PermissionDenied,
            "RESOURCEEXHAUSTED" => Code::ResourceExhausted,
            "FAILEDPRECONDITION" => Code::FailedPrecondition,
            "ABORTED" => Code::Aborted,
            "OUTOFRANGE" => Code::OutOfRange,
            "UNIMPLEMENTED" => Code::Unimplemented,
            "INTERNAL" => Code::Internal,
            "UNAVAILABLE" => Code::Unavailable,
            "DATALOSS" => Code::DataLoss,
            "UNAUTHENTICATED" => Code::Unauthenticated,
            _ => return None,
        };
        Some(Failure::Code(code))
    }

    /// The status the caller receives.
    pub fn to_status(&self, method: &str, applied: bool) -> Status {
        let cause = if applied {
            format!("injected fault on {method}: the call was applied, then failed")
        } else {
            format!("injected fault on {method}")
        };
        match self {
            Failure::Code(code) => Status::new(*code, cause),
            Failure::Business(reason) => Refusal::new(reason.clone(), cause).to_status(),
        }
    }
}

/// One configured fault with its parsed failure.
#[derive(Debug, Clone)]
struct Armed {
    fault: Fault,
    failure: Failure,
}

/// What happens to one call, decided when it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub latency: Duration,
    /// `Some` when the call fails.
    pub failure: Option<Failure>,
    /// Handle and commit the call before failing it.
    pub apply_then_fail: bool,
}

/// The faults of one participant process, shared by the layer and the Chaos service.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    armed: Arc<Mutex<BTreeMap<String, Armed>>>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Armed>> {
        // A panic elsewhere cannot leave the map half-updated (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms (or replaces) the fault for its method.
    pub fn set(&self, fault: Fault) -> Result<(), ServiceError> {
        let method = fault.method.trim().trim_start_matches('/').to_owned();
        if method != ANY_METHOD && !method.contains('/') {
            return Err(ServiceError::invalid(
                "fault.method",
                "name a full method such as \"payment.v1.Payment/Charge\", or \"*\"",
            ));
        }
        if !(0.0..=1.0).contains(&fault.error_rate) {
            return Err(ServiceError::invalid("fault.error_rate", "must be between 0 and 1 (1 fails every call)"));
        }
        let failure = Failure::parse(&fault.error_code).ok_or_else(|| {
            ServiceError::invalid(
                "fault.error_code",
                "use a gRPC code name such as \"UNAVAILABLE\" or a business error name such as \"Payment.CardDeclined\"",
            )
        })?;
        let fault = Fault { method, ..fault };
        tracing::warn!(?fault, "fault armed");
        self.lock().insert(fault.method.clone(), Armed { fault, failure });
        Ok(())
    }

    /// Disarms the fault of `method`, or every fault when `method` is empty.
    pub fn clear(&self, method: &str) {
        let method = method.trim().trim_start_matches('/');
        let mut armed = self.lock();
        if method.is_empty() {
            armed.clear();
        } else {
            armed.remove(method);
        }
        tracing::info!(method, "faults cleared");
    }

    /// The armed faults, `remaining` showing what is left.
    pub fn list(&self) -> Vec<Fault> {
        self.lock().values().map(|a| a.fault.clone()).collect()
    }

    /// Decides the fate of one call of `method` (`package.Service/Method`), counting it
    /// against the matching fault's `remaining`.
    pub fn decide(&self, method: &str) -> Option<Decision> {
        let mut armed = self.lock();
        let is_read = method.rsplit('/').next().is_some_and(|name| name.starts_with("Get"));
        let pattern = if armed.contains_key(method) {
            method
        } else if !is_read && armed.contains_key(ANY_METHOD) {
            ANY_METHOD
        } else {
            return None;
        };
        let entry = armed.get_mut(pattern)?;
        let fails = entry.fault.error_rate >= 1.0
            || (entry.fault.error_rate > 0.0 && rand::random::<f64>() < entry.fault.error_rate);
        let decision = Decision {
            latency: Duration::from_millis(u64::from(entry.fault.latency_ms)),
            failure: fails.then(|| entry.failure.clone()),
            apply_then_fail: entry.fault.apply_then_fail,
        };
        if entry.fault.remaining > 0 {
            entry.fault.remaining -= 1;
            if entry.fault.remaining == 0 {
                armed.remove(pattern);
            }
        }
        Some(decision)
    }
}

/// Marks a response whose call a fault touched, for the participant's metrics (an extension
/// of the HTTP response, read by the request layer around every service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFault {
    /// Delayed by `latency_ms`, then handled normally.
    Latency,
    /// Failed before it was handled.
    Error,
    /// Handled and committed, then failed.
    ErrorAfterApply,
}

impl InjectedFault {
    /// The `kind` label of `sagaflow_participant_injected_faults_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            InjectedFault::Latency => "latency",
            InjectedFault::Error => "error",
            InjectedFault::ErrorAfterApply => "error_after_apply",
        }
    }
}

fn marked(mut response: http::Response<Body>, fault: InjectedFault) -> http::Response<Body> {
    response.extensions_mut().insert(fault);
    response
}

/// Wraps a business service in fault injection.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    faults: Faults,
}

impl FaultLayer {
    pub fn new(faults: Faults) -> Self {
        Self { faults }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultInjection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultInjection { inner, faults: self.faults.clone() }
    }
}

/// A business service behind fault injection; served under the inner service's name.
#[derive(Debug, Clone)]
pub struct FaultInjection<S> {
    inner: S,
    faults: Faults,
}

impl<S: NamedService> NamedService for FaultInjection<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for FaultInjection<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_owned();
        let decision = self.faults.decide(&method);
        // The instance that was polled ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let Some(decision) = decision else {
                return inner.call(request).await;
            };
            if !decision.latency.is_zero() {
                tokio::time::sleep(decision.latency).await;
            }
            let Some(failure) = decision.failure else {
                let response = inner.call(request).await?;
                return Ok(if decision.latency.is_zero() {
                    response
                } else {
                    marked(response, InjectedFault::Latency)
                });
            };
            if decision.apply_then_fail {
                // A unary handler has run and committed by the time its response exists;
                // dropping the response loses only the answer, as a broken connection would.
                let response = inner.call(request).await?;
                drop(response);
                tracing::warn!(%method, "injected fault after applying the call");
                return Ok(marked(failure.to_status(&method, true).into_http(), InjectedFault::ErrorAfterApply));
            }
            tracing::warn!(%method, "injected fault");
            Ok(marked(failure.to_status(&method, false).into_http(), InjectedFault::Error))
        })
    }
}

/// The `participants.v1.Chaos` gRPC service.
#[derive(Debug, Clone)]
pub struct ChaosApi {
    faults: Faults,
}

impl ChaosApi {
    pub fn new(faults: Faults) -> Self {
        Self { faults }
    }
}

#[tonic::async_trait]
impl Chaos for ChaosApi {
    async fn set_fault(&self, request: Request<SetFaultRequest>) -> Result<Response<SetFaultResponse>, Status> {
        let fault = request.into_inner().fault.ok_or_else(|| ServiceError::invalid("fault", "is required"))?;
        self.faults.set(fault)?;
        Ok(Response::new(SetFaultResponse {}))
    }

    async fn clear_faults(
        &self,
        request: Request<ClearFaultsRequest>,
    ) -> Result<Response<ClearFaultsResponse>, Status> {
        self.faults.clear(&request.into_inner().method);
        Ok(Response::new(ClearFaultsResponse {}))
    }

    async fn list_faults(&self, _request: Request<ListFaultsRequest>) -> Result<Response<ListFaultsResponse>, Status> {
        Ok(Response::new(ListFaultsResponse { faults: self.faults.list() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(method: &str, error_rate: f64, remaining: u32) -> Fault {
        Fault { method: method.into(), error_rate, remaining, ..Default::default() }
    }

    #[test]
    fn parses_code_names_and_business_errors() {
        assert_eq!(Failure::parse(""), Some(Failure::Code(Code::Unavailable)));
        assert_eq!(Failure::parse("DEADLINE_EXCEEDED"), Some(Failure::Code(Code::DeadlineExceeded)));
        assert_eq!(Failure::parse("Internal"), Some(Failure::Code(Code::Internal)));
        assert_eq!(Failure::parse("Payment.CardDeclined"), Some(Failure::Business("Payment.CardDeclined".into())));
        assert_eq!(Failure::parse("NOPE"), None);
    }

    #[test]
    fn remaining_counts_down_and_disarms() {
        let faults = Faults::default();
        faults.set(fault("payment.v1.Payment/Charge", 1.0, 2)).expect("valid fault");
        for _ in 0..2 {
            let d = faults.decide("payment.v1.Payment/Charge").expect("armed");
            assert!(d.failure.is_some());
        }
        assert_eq!(faults.decide("payment.v1.Payment/Charge"), None);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn wildcard_spares_reads_and_exact_names_win() {
        let faults = Faults::default();
        faults.set(fault("*", 1.0, 0)).expect("valid fault");
        faults.set(fault("payment.v1.Payment/Refund", 0.0, 0)).expect("valid fault");
        assert!(faults.decide("payment.v1.Payment/GetPayments").is_none());
        let refund = faults.decide("payment.v1.Payment/Refund").expect("armed");
        assert!(refund.failure.is_none());
        let charge = faults.decide("payment.v1.Payment/Charge").expect("armed");
        assert!(charge.failure.is_some());
    }

    #[test]
    fn rejects_bad_faults() {
        let faults = Faults::default();
        assert!(faults.set(fault("Charge", 1.0, 0)).is_err());
        assert!(faults.set(fault("*", 1.5, 0)).is_err());
        let bad_code = Fault { error_code: "BOGUS".into(), ..fault("*", 1.0, 0) };
        assert!(faults.set(bad_code).is_err());
    }
}
