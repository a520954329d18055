//! Parsing of gRPC task resources, `grpc://<participant>/<package.Service>/<Method>`
//! (DESIGN §2). Pure string work, shared by the invoker and the validator.

use std::fmt;

use thiserror::Error;

/// The URI scheme of a gRPC task resource.
pub const GRPC_SCHEME: &str = "grpc://";

/// A parsed `grpc://<participant>/<package.Service>/<Method>` resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrpcResource {
    /// The participant alias, mapped to an endpoint by configuration.
    pub participant: String,
    /// The fully qualified service name, e.g. `payment.v1.Payment`.
    pub service: String,
    /// The method name, e.g. `Charge`.
    pub method: String,
}

impl GrpcResource {
    /// The HTTP/2 path of the call, `/<package.Service>/<Method>`.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

impl fmt::Display for GrpcResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{GRPC_SCHEME}{}/{}/{}", self.participant, self.service, self.method)
    }
}

/// Why a resource string is not a gRPC task resource.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "resource \"{resource}\" is not a gRPC task resource: {reason} (expected grpc://<participant>/<package.Service>/<Method>, e.g. grpc://payment/payment.v1.Payment/Charge)"
)]
pub struct ResourceError {
    pub resource: String,
    pub reason: &'static str,
}

/// Parses `grpc://<participant>/<package.Service>/<Method>`.
///
/// The participant is an alias (letters, digits, `-`, `_`, `.`), the service a dotted
/// protobuf name and the method a protobuf identifier; anything else (a query, a fragment,
/// extra segments) is refused so that a typo cannot silently call something else.
pub fn parse_resource(resource: &str) -> Result<GrpcResource, ResourceError> {
    let fail = |reason| ResourceError { resource: resource.to_owned(), reason };
    let rest = resource.strip_prefix(GRPC_SCHEME).ok_or_else(|| fail("it does not start with grpc://"))?;
    let mut parts = rest.split('/');
    let (Some(participant), Some(service), Some(method), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail("it needs exactly three parts after grpc://"));
    };
    if participant.is_empty() {
        return Err(fail("the participant is empty"));
    }
    if !participant.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(fail("the participant alias may only hold letters, digits, '-', '_' and '.'"));
    }
    if service.is_empty() || !service.split('.').all(is_identifier) {
        return Err(fail("the service must be a dotted protobuf name such as payment.v1.Payment"));
    }
    if !is_identifier(method) {
        return Err(fail("the method must be a protobuf identifier such as Charge"));
    }
    Ok(GrpcResource { participant: participant.to_owned(), service: service.to_owned(), method: method.to_owned() })
}

/// A protobuf identifier: a letter or `_`, then letters, digits or `_`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_resource() {
        let r = parse_resource("grpc://payment/payment.v1.Payment/Charge").expect("valid");
        assert_eq!(r.participant, "payment");
        assert_eq!(r.service, "payment.v1.Payment");
        assert_eq!(r.method, "Charge");
        assert_eq!(r.path(), "/payment.v1.Payment/Charge");
        assert_eq!(r.to_string(), "grpc://payment/payment.v1.Payment/Charge");
    }

    #[test]
    fn refuses_malformed_resources() {
        for bad in [
            "arn:aws:states:::lambda:invoke",
            "grpc://",
            "grpc://payment",
            "grpc://payment/payment.v1.Payment",
            "grpc:///payment.v1.Payment/Charge",
            "grpc://payment/payment.v1.Payment/Charge/extra",
            "grpc://payment/payment..Payment/Charge",
            "grpc://payment/payment.v1.Payment/Char ge",
            "grpc://pay ment/payment.v1.Payment/Charge",
            "grpc://payment/payment.v1.Payment/",
            "grpc://payment/1payment.Payment/Charge",
        ] {
            let err = parse_resource(bad).expect_err(bad);
            assert!(err.to_string().contains("grpc://<participant>"), "{err}");
        }
    }
}
