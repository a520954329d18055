//! Security of the API and of the calls to participants: optional TLS (rustls) with client
//! certificates, bearer-token authentication, and redaction of configured fields in what the
//! API and the CLI show. See `docs/security.md` for the settings and what each protects.
//!
//! - [`tls`]: PEM files into tonic's server and client TLS configurations, checked at start.
//! - [`auth`]: the bearer-token tower layer, tokens compared in constant time.
//! - [`redact`]: JSON paths, masking and the scrubbing of masked values from other text.
//! - [`redacted_api`]: the API services wrapped so that every answer is masked.

pub mod auth;
pub mod redact;
pub mod redacted_api;
pub mod tls;

use crate::security::auth::AuthLayer;
use crate::security::redact::Redactor;

/// How the API server is protected; the default is none of it (plaintext, no token, nothing
/// masked), as before these settings existed.
#[derive(Debug, Clone, Default)]
pub struct ApiSecurity {
    /// TLS for the API (loaded by [`tls::ServerTlsFiles::load`]), with client certificates
    /// required when it names a client CA.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Bearer tokens; `AuthLayer::off()` when none are configured.
    pub auth: AuthLayer,
    /// Paths masked in every answer.
    pub redactor: Redactor,
}
