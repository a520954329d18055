//! The `sagaflow-participant` command line: flags, each also read from a `SAGAFLOW_*`
//! environment variable (`DATABASE_URL` as is), checked into a [`Config`].

use std::time::Duration;

use clap::{Parser, ValueEnum};

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
        Ok(Config {
            services: self.participant.services(),
            listen: self.listen.unwrap_or_else(|| self.participant.default_listen().to_owned()),
            database_url: self.database_url,
            seed_demo_catalog: self.seed_demo_catalog,
            reservation_ttl: self.reservation_ttl,
            expiry_sweep_interval: self.expiry_sweep_interval,
            max_connections: self.db_max_connections,
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
