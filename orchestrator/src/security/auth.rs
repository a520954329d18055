//! Bearer-token authentication of the API: a tower layer in front of every gRPC service that
//! refuses a call without `authorization: Bearer <token>` naming one of the configured tokens
//! with `UNAUTHENTICATED`. Tokens come from a file (one per line) or an environment variable;
//! only their SHA-256 digests are kept, and a presented token is compared with each of them in
//! constant time. Health checking and reflection may be left open ([`Exempt`]).

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::warn;

/// The shortest token accepted: a guessable token is no protection.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted (it travels in an HTTP/2 header).
pub const MAX_TOKEN_LEN: usize = 4096;

/// A token source that cannot be used.
#[derive(Debug, Error)]
pub enum AuthConfigError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{origin}: a token must be {MIN_TOKEN_LEN}-{MAX_TOKEN_LEN} printable ASCII characters without spaces \
         ({reason}); generate one with `openssl rand -hex 32`"
    )]
    BadToken { origin: String, reason: String },
    #[error("{origin} holds no token; put one per line (lines starting with # are comments)")]
    Empty { origin: String },
    #[error("auth-exempt {0:?} is not a service group; use health, reflection, or none")]
    UnknownExempt(String),
}

/// The accepted tokens, as SHA-256 digests: equal-length values to compare in constant time,
/// so neither a token's content nor its length leaks through timing.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the digests: they would let an offline guesser check candidates.
        f.debug_struct("Tokens").field("count", &self.digests.len()).finish()
    }
}

impl Tokens {
    /// Tokens from a file: one per line, blank lines and lines starting with `#` ignored.
    pub fn from_file(path: &Path) -> Result<Tokens, AuthConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthConfigError::Read { path: path.display().to_string(), source })?;
        let mut tokens = Tokens::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            tokens.add(line, || format!("line {} of {}", i + 1, path.display()))?;
        }
        if tokens.is_empty() {
            return Err(AuthConfigError::Empty { origin: path.display().to_string() });
        }
        Ok(tokens)
    }

    /// Tokens from the value of environment variable `name`: separated by commas or whitespace.
    pub fn from_env_value(name: &str, value: &str) -> Result<Tokens, AuthConfigError> {
        let mut tokens = Tokens::default();
        for (i, token) in value.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).enumerate() {
            tokens.add(token, || format!("token {} of {name}", i + 1))?;
        }
        if tokens.is_empty() {
            return Err(AuthConfigError::Empty { origin: name.to_owned() });
        }
        Ok(tokens)
    }

    /// Add one token; `origin` names where it came from, for the error (never the token).
    pub fn add(&mut self, token: &str, origin: impl FnOnce() -> String) -> Result<(), AuthConfigError> {
        let reason = if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) {
            Some(format!("this one has {} characters", token.len()))
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some("this one holds a space, a control or a non-ASCII character".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(AuthConfigError::BadToken { origin: origin(), reason });
        }
        self.digests.push(digest(token));
        Ok(())
    }

    /// Merge another source's tokens in.
    pub fn extend(&mut self, other: Tokens) {
        self.digests.extend(other.digests);
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether `presented` is one of the tokens. Every token is compared, without stopping at
    /// a match, and each comparison takes the same time whatever the bytes.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        for accepted in &self.digests {
            found |= accepted.ct_eq(&presented);
        }
        bool::from(found)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Service groups that may be called without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exempt {
    /// `grpc.health.v1.Health`: load balancers and orchestrators probe it without credentials.
    Health,
    /// Server reflection (v1 and v1alpha): it tells the API's shape, nothing of its data.
    Reflection,
}

impl Exempt {
    /// The default: health checks stay open (probes carry no token), reflection needs one.
    pub const DEFAULT: &'static [Exempt] = &[Exempt::Health];

    /// `health`, `reflection`; `none` is an empty list.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Exempt>, AuthConfigError> {
        let mut out = Vec::new();
        for name in names {
            match name.as_ref().trim().to_ascii_lowercase().as_str() {
                "health" => out.push(Exempt::Health),
                "reflection" => out.push(Exempt::Reflection),
                "none" | "" => {}
                other => return Err(AuthConfigError::UnknownExempt(other.to_owned())),
            }
        }
        out.dedup();
        Ok(out)
    }

    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Exempt::Health => &["/grpc.health.v1.Health/"],
            Exempt::Reflection => {
                &["/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"]
            }
        }
    }
}

/// Why a call was refused; the message says what to send, never what was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    NotBearer,
    Unknown,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this server requires a bearer token: send the metadata `authorization: Bearer <token>` \
                 (sagaflow: --token, --token-file or SAGAFLOW_TOKEN)"
            }
            Refusal::NotBearer => "the authorization metadata must read `Bearer <token>`",
            Refusal::Unknown => {
                "the bearer token is not one this server accepts; check the client's token against the \
                 server's auth-tokens-file or SAGAFLOW_AUTH_TOKENS"
            }
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Refusal::Missing => "no token",
            Refusal::NotBearer => "not a bearer token",
            Refusal::Unknown => "unknown token",
        }
    }
}

/// What the layer enforces.
#[derive(Debug)]
pub struct Policy {
    pub tokens: Tokens,
    pub exempt: Vec<Exempt>,
}

impl Policy {
    /// Admit or refuse a call to `path` (`/package.Service/Method`) with these headers.
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Refusal> {
        if self.exempt.iter().flat_map(|e| e.prefixes()).any(|prefix| path.starts_with(prefix)) {
            return Ok(());
        }
        let value = headers.get(http::header::AUTHORIZATION).ok_or(Refusal::Missing)?;
        let text = value.to_str().map_err(|_| Refusal::NotBearer)?.trim();
        let (scheme, token) = text.split_once(' ').ok_or(Refusal::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Refusal::NotBearer);
        }
        if self.tokens.accepts(token.trim()) { Ok(()) } else { Err(Refusal::Unknown) }
    }
}

/// The tower layer; `AuthLayer::off()` lets everything through (authentication not configured).
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    policy: Option<Arc<Policy>>,
}

impl AuthLayer {
    pub fn new(policy: Policy) -> Self {
        AuthLayer { policy: Some(Arc::new(policy)) }
    }

    pub fn off() -> Self {
        AuthLayer { policy: None }
    }

    pub fn is_on(&self) -> bool {
        self.policy.is_some()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService { inner, policy: self.policy.clone() }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Option<Arc<Policy>>,
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(policy) = &self.policy else { return Either::Left(self.inner.call(request)) };
        match policy.check(request.uri().path(), request.headers()) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(refusal) => {
                warn!(method = request.uri().path(), reason = refusal.kind(), "refused an unauthenticated call");
                Either::Right(ready(Ok(tonic::Status::unauthenticated(refusal.message()).into_http())))
            }
        }
    }
}

/// The client side: sends `authorization: Bearer <token>` on every call (nothing when the
/// token is `None`). The header is marked sensitive, so HTTP/2 never puts it in its header
/// compression table.
#[derive(Clone, Default)]
pub struct BearerToken {
    header: Option<tonic::metadata::AsciiMetadataValue>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").field("set", &self.header.is_some()).finish()
    }
}

impl BearerToken {
    /// `origin` names where the token came from, for the error when it cannot be sent.
    pub fn new(token: Option<&str>, origin: &str) -> Result<BearerToken, AuthConfigError> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(BearerToken::default()) };
        let mut header = tonic::metadata::AsciiMetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            AuthConfigError::BadToken {
                origin: origin.to_owned(),
                reason: "it cannot be sent as a header value".to_owned(),
            }
        })?;
        header.set_sensitive(true);
        Ok(BearerToken { header: Some(header) })
    }
}

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    fn tokens(list: &[&str]) -> Tokens {
        let mut t = Tokens::default();
        for token in list {
            t.add(token, || "test".into()).expect("valid token");
        }
        t
    }

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(value) = authorization {
            h.insert(http::header::AUTHORIZATION, value.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn only_an_accepted_token_is_accepted() {
        let t = tokens(&[GOOD, "fedcba9876543210fedcba9876543210"]);
        assert!(t.accepts(GOOD));
        assert!(t.accepts("fedcba9876543210fedcba9876543210"));
        assert!(!t.accepts(""));
        assert!(!t.accepts(&GOOD[..31]), "a prefix is not the token");
        assert!(!t.accepts(&format!("{GOOD}0")), "nor is a longer one");
        assert!(!t.accepts("0123456789abcdef0123456789abcdeF"), "case matters");
        assert!(!Tokens::default().accepts(GOOD), "no tokens accept nothing");
    }

    #[test]
    fn the_comparison_looks_at_every_token_and_keeps_no_plain_text() {
        // The digests are what is stored; Debug shows only how many.
        let t = tokens(&[GOOD, "another-token-that-is-long-enough"]);
        assert_eq!(format!("{t:?}"), "Tokens { count: 2 }");
        assert_eq!(t.digests[0], digest(GOOD));
        // A match on the last token works as well as one on the first (no early exit needed).
        assert!(t.accepts("another-token-that-is-long-enough"));
    }

    #[test]
    fn weak_or_malformed_tokens_are_refused_without_echoing_them() {
        let mut t = Tokens::default();
        let err = t.add("short", || "line 2 of tokens".into()).expect_err("too short");
        assert!(err.to_string().contains("line 2 of tokens") && !err.to_string().contains("short\""), "{err}");
        assert!(t.add("has a space in the middle of it", || "x".into()).is_err());
        assert!(t.add(&"x".repeat(MAX_TOKEN_LEN + 1), || "x".into()).is_err());
        assert!(Tokens::from_env_value("SAGAFLOW_AUTH_TOKENS", " , ").is_err());
        let two = Tokens::from_env_value("SAGAFLOW_AUTH_TOKENS", &format!("{GOOD}, {GOOD}x")).expect("two");
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn token_files_skip_comments_and_blank_lines() {
        let dir = std::env::temp_dir().join(format!("sagaflow-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tokens");
        std::fs::write(&file, format!("# operators\n{GOOD}\n\n  second-token-long-enough  \n")).expect("write");
        let t = Tokens::from_file(&file).expect("tokens");
        assert_eq!(t.len(), 2);
        assert!(t.accepts("second-token-long-enough"));
        std::fs::write(&file, "# nothing here\n").expect("write");
        assert!(matches!(Tokens::from_file(&file), Err(AuthConfigError::Empty { .. })));
        assert!(matches!(Tokens::from_file(&dir.join("missing")), Err(AuthConfigError::Read { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_policy_reads_the_bearer_header_and_honours_exemptions() {
        let policy = Policy { tokens: tokens(&[GOOD]), exempt: vec![Exempt::Health] };
        let call = "/sagaflow.v1.SagaService/ListExecutions";
        assert_eq!(policy.check(call, &headers(None)), Err(Refusal::Missing));
        assert_eq!(policy.check(call, &headers(Some(GOOD))), Err(Refusal::NotBearer));
        assert_eq!(policy.check(call, &headers(Some(&format!("Basic {GOOD}")))), Err(Refusal::NotBearer));
        assert_eq!(policy.check(call, &headers(Some("Bearer wrong-token-but-long"))), Err(Refusal::Unknown));
        assert_eq!(policy.check(call, &headers(Some(&format!("Bearer {GOOD}")))), Ok(()));
        assert_eq!(policy.check(call, &headers(Some(&format!("bearer  {GOOD} ")))), Ok(()));
        assert_eq!(policy.check("/grpc.health.v1.Health/Check", &headers(None)), Ok(()));
        let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        assert_eq!(policy.check(reflection, &headers(None)), Err(Refusal::Missing));
        let open = Policy { tokens: tokens(&[GOOD]), exempt: Exempt::parse_list(&["reflection"]).expect("list") };
        assert_eq!(open.check(reflection, &headers(None)), Ok(()));
        assert_eq!(open.check("/grpc.health.v1.Health/Check", &headers(None)), Err(Refusal::Missing));
    }

    #[test]
    fn the_client_sends_what_the_server_checks() {
        use tonic::service::Interceptor;
        let mut bearer = BearerToken::new(Some(GOOD), "--token").expect("token");
        let request = bearer.call(tonic::Request::new(())).expect("intercepted");
        let headers = request.into_parts().0.into_headers();
        let policy = Policy { tokens: tokens(&[GOOD]), exempt: Vec::new() };
        assert_eq!(policy.check("/sagaflow.v1.SagaService/ListExecutions", &headers), Ok(()));
        assert!(headers.get("authorization").expect("sent").is_sensitive());
        assert_eq!(format!("{bearer:?}"), "BearerToken { set: true }");
        let mut none = BearerToken::new(None, "--token").expect("none");
        assert!(none.call(tonic::Request::new(())).expect("intercepted").metadata().get("authorization").is_none());
        assert!(BearerToken::new(Some("bad\ntoken"), "--token").is_err());
    }

    #[test]
    fn refusal_messages_never_hold_the_token() {
        for r in [Refusal::Missing, Refusal::NotBearer, Refusal::Unknown] {
            assert!(!r.message().contains(GOOD));
            assert!(r.message().contains("Bearer") || r.message().contains("token"));
        }
        assert!(matches!(Exempt::parse_list(&["health", "metrics"]), Err(AuthConfigError::UnknownExempt(_))));
        assert_eq!(Exempt::parse_list(&["none"]).expect("none"), Vec::<Exempt>::new());
    }
}
