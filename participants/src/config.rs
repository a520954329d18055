//! The `sagaflow-participant` command line: flags, each also read from a `SAGAFLOW_*`
//! environment variable (`DATABASE_URL` as is), checked into a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::kit::telemetry::LogFormat;
use crate::server::ServiceKind;

/// Which participant(s) one process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Selection {
    Payment,
    Inventory,
    Fraud,
    Fulfillment,
    /// The four services on one port.
    All,
}

impl Selection {
    pub fn services(self) -> Vec<ServiceKind> {
        match self {
            Selection::Payment => vec![ServiceKind::Payment],
            Selection::Inventory => vec![ServiceKind::Inventory],
            Selection::Fraud => vec![ServiceKind::Fraud],
            Selection::Fulfillment => vec![ServiceKind::Fulfillment],
            Selection::All => ServiceKind::ALL.to_vec(),
        }
    }

    /// The listen address when none is given: loopback, a port per participant.
    pub fn default_listen(self) -> &'static str {
        match self {
            Selection::All => "127.0.0.1:50060",
            Selection::Payment => "127.0.0.1:50061",
            Selection::Inventory => "127.0.0.1:50062",
            Selection::Fraud => "127.0.0.1:50063",
            Selection::Fulfillment => "127.0.0.1:50064",
        }
    }
}

/// Runs Sagaflow demo participants: idempotent gRPC services with their own schemas,
/// compensation tombstones and runtime fault injection.
#[derive(Debug, Parser)]
#[command(name = "sagaflow-participant", version)]
pub struct Cli {
    /// The participant to serve, or `all` for the four on one port.
    #[arg(value_enum, env = "SAGAFLOW_PARTICIPANT")]
    pub participant: Selection,

    /// Address to listen on, host:port. Default: 127.0.0.1:50060 for `all`, 50061 payment,
    /// 50062 inventory, 50063 fraud, 50064 fulfillment.
    #[arg(long, env = "SAGAFLOW_LISTEN")]
    pub listen: Option<String>,

    /// Database URL: `postgres://...` (each participant in its own schema) or
    /// `sqlite:///path/to/file.db` / a file path (SQLite, created if missing; each
    /// participant's tables prefixed with its name).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Create the demo catalog's SKUs (existing stock is left alone).
    #[arg(long, env = "SAGAFLOW_SEED_DEMO_CATALOG")]
    pub seed_demo_catalog: bool,

    /// Reservation TTL when a Reserve call asks for none, e.g. "30m".
    #[arg(long, env = "SAGAFLOW_RESERVATION_TTL", default_value = "30m", value_parser = humantime::parse_duration)]
    pub reservation_ttl: Duration,

    /// How often expired reservations are swept, e.g. "10s" (they are also expired lazily
    /// whenever stock is read or reserved).
    #[arg(long, env = "SAGAFLOW_EXPIRY_SWEEP_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub expiry_sweep_interval: Duration,

    /// Database connections per process.
    #[arg(long, env = "SAGAFLOW_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// Serve over TLS with this certificate chain (PEM); needs --tls-key. Plaintext when unset.
    #[arg(long, env = "SAGAFLOW_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "SAGAFLOW_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Require callers to present a certificate signed by this CA (PEM): mutual TLS, so only
    /// orchestrators holding such a certificate may call (needs --tls-cert).
    #[arg(long, env = "SAGAFLOW_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve Prometheus metrics (calls, errors, injected faults) at `http://ADDR/metrics`,
    /// e.g. `127.0.0.1:9465`. Off when unset.
    #[arg(long, env = "SAGAFLOW_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log lines on stderr as `human` text or `json` objects. Traces are exported over OTLP
    /// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (service name `OTEL_SERVICE_NAME`, default
    /// `sagaflow-participant`).
    #[arg(long, value_enum, env = "SAGAFLOW_LOG_FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// A checked participant configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub services: Vec<ServiceKind>,
    pub listen: String,
    pub database_url: String,
    pub seed_demo_catalog: bool,
    /// Default reservation TTL (30 minutes).
    pub reservation_ttl: Duration,
    /// Period of the expiry sweep (10 seconds).
    pub expiry_sweep_interval: Duration,
    /// Pool size (10).
    pub max_connections: u32,
    /// TLS files; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// Where `/metrics` is served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
}

/// The PEM files of a participant serving TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain the participant presents.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Callers must present a certificate signed by this CA; `None`: any caller (TLS only).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Read the files into tonic's server configuration (parsed when the server starts).
    pub fn load(&self) -> Result<tonic::transport::ServerTlsConfig, ConfigError> {
        let read = |path: &Path, what: &str| {
            let bytes = std::fs::read(path)
                .map_err(|e| ConfigError(format!("cannot read the TLS {what} {}: {e}", path.display())))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
                return Err(ConfigError(format!("the TLS {what} {} is not a PEM file", path.display())));
            }
            Ok(bytes)
        };
        let identity = tonic::transport::Identity::from_pem(read(&self.cert, "certificate")?, read(&self.key, "key")?);
        // A handshake that never finishes must not hold a connection for ever.
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity).timeout(Duration::from_secs(10));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca, "client CA")?));
        }
        Ok(config)
    }
}

/// A configuration that cannot work, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Cli {
    /// Checks the flags and resolves defaults.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        if self.database_url.trim().is_empty() {
            return Err(ConfigError(
                "--database-url (or DATABASE_URL) is empty; give a postgres:// URL or sqlite:///path/to/file.db".into(),
            ));
        }
        if let Err(err) = crate::backend::BackendKind::of_url(&self.database_url) {
            return Err(ConfigError(format!("--database-url: {err}")));
        }
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError("--reservation-ttl must be longer than 0, e.g. \"30m\"".into()));
        }
        if self.expiry_sweep_interval < Duration::from_millis(100) {
            return Err(ConfigError("--expiry-sweep-interval must be at least 100ms, e.g. \"10s\"".into()));
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError("--db-max-connections must be at least 1".into()));
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: self.tls_client_ca }),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(ConfigError("--tls-client-ca requires TLS: set --tls-cert and --tls-key too".into()));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError("--tls-cert is set: set --tls-key (its private key) too".into()));
            }
            (None, Some(_)) => {
                return Err(ConfigError("--tls-key is set: set --tls-cert (its certificate) too".into()));
            }
        };
        Ok(Config {
            services: self.participant.services(),
            listen: self.listen.unwrap_or_else(|| self.participant.default_listen().to_owned()),
            database_url: self.database_url,
            seed_demo_catalog: self.seed_demo_catalog,
            reservation_ttl: self.reservation_ttl,
            expiry_sweep_interval: self.expiry_sweep_interval,
            max_connections: self.db_max_connections,
            tls,
            metrics_listen: self.metrics_listen,
            log_format: self.log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_defaults() {
        let cli = Cli::try_parse_from([
            "sagaflow-participant",
            "all",
            "--database-url",
            "postgres://localhost/x",
            "--seed-demo-catalog",
        ])
        .expect("valid flags");
        let config = cli.into_config().expect("valid config");
        assert_eq!(config.services, ServiceKind::ALL.to_vec());
        assert_eq!(config.listen, "127.0.0.1:50060");
        assert!(config.seed_demo_catalog);
        assert_eq!(config.reservation_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn tls_files_come_in_pairs() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["sagaflow-participant", "payment", "--database-url", "postgres://localhost/x"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).expect("valid flags").into_config()
        };
        assert_eq!(parse(&[]).expect("plaintext").tls, None);
        let tls = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-client-ca", "ca.pem"]).expect("mTLS").tls;
        assert_eq!(tls.and_then(|t| t.client_ca), Some(PathBuf::from("ca.pem")));
        assert!(parse(&["--tls-cert", "c.pem"]).expect_err("no key").to_string().contains("--tls-key"));
        assert!(parse(&["--tls-client-ca", "ca.pem"]).expect_err("no cert").to_string().contains("--tls-cert"));
        let missing = TlsFiles { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into(), client_ca: None };
        assert!(missing.load().expect_err("missing").to_string().contains("/nonexistent/c.pem"));
    }

    #[test]
    fn rejects_a_zero_ttl() {
        let cli = Cli::try_parse_from([
            "sagaflow-participant",
            "inventory",
            "--database-url",
            "postgres://localhost/x",
            "--reservation-ttl",
            "0s",
        ])
        .expect("valid flags");
        assert!(cli.into_config().is_err());
    }
}
