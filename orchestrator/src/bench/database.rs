//! The benchmark's databases: the refusal to run on a database that holds other data, the
//! throwaway databases it may create, the statistics it reads, and the clean-up.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::{Connection, PgConnection};

/// Schemas the benchmark's components create (the orchestrator's and the participants').
const CREATED_SCHEMAS: [&str; 5] = ["sagaflow", "payment", "inventory", "fulfillment", "fraud"];
/// Where sqlx keeps every component's applied migrations.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// `url` naming database `name` instead (the query string is kept).
pub(crate) fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let authority = base.find("//").map(|i| i + 2).unwrap_or(0);
    let cut = base[authority..].find('/').map(|i| i + authority).unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..cut]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    PgConnection::connect(url).await.with_context(|| format!("connecting to {}", redact(url)))
}

/// The URL without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// What a database held before the benchmark touched it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Before {
    schemas: BTreeSet<String>,
    migrations_table: bool,
}

/// User schemas and relations (anything outside `pg_catalog`, `information_schema`, toast
/// and temporary schemas, and the empty `public` schema).
pub(crate) async fn inspect(url: &str) -> anyhow::Result<(Before, Vec<String>)> {
    let mut conn = connect(url).await?;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
           AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%'",
    )
    .fetch_all(&mut conn)
    .await?;
    let relations: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
         ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await.ok();
    let mut found: Vec<String> = schemas.iter().filter(|s| *s != "public").map(|s| format!("schema {s}")).collect();
    found.extend(relations.iter().map(|r| format!("relation {r}")));
    let before = Before {
        migrations_table: relations.iter().any(|r| r == &format!("public.{MIGRATIONS_TABLE}")),
        schemas: schemas.into_iter().collect(),
    };
    Ok((before, found))
}

/// Refuse a database that holds anything, unless allowed.
pub(crate) async fn check_empty(url: &str, allow_existing: bool) -> anyhow::Result<Before> {
    let (before, found) = inspect(url).await?;
    if !found.is_empty() && !allow_existing {
        let shown: Vec<&str> = found.iter().take(5).map(String::as_str).collect();
        bail!(
            "refusing to benchmark against {}: it already holds data ({}{}). The benchmark creates tables and \
             drops them afterwards; point it at an empty database, pass --create-database to make a throwaway \
             one on that server, or --allow-existing-data to run anyway (what existed before is kept)",
            redact(url),
            shown.join(", "),
            if found.len() > shown.len() { format!(" and {} more", found.len() - shown.len()) } else { String::new() }
        );
    }
    Ok(before)
}

/// Drop what the benchmark created in a database it did not create: the schemas and the
/// migrations table that did not exist before.
pub(crate) async fn clean_up(url: &str, before: &Before) -> anyhow::Result<Vec<String>> {
    let mut conn = connect(url).await?;
    let mut dropped = Vec::new();
    for schema in CREATED_SCHEMAS {
        if !before.schemas.contains(schema) {
            let done = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&mut conn).await;
            done.with_context(|| format!("dropping schema {schema}"))?;
            dropped.push(format!("schema {schema}"));
        }
    }
    if !before.migrations_table {
        sqlx::query(&format!("DROP TABLE IF EXISTS public.\"{MIGRATIONS_TABLE}\"")).execute(&mut conn).await?;
        dropped.push(format!("table public.{MIGRATIONS_TABLE}"));
    }
    conn.close().await.ok();
    Ok(dropped)
}

/// Create database `name` on the server `url` names (connecting to `url`'s database).
pub(crate) async fn create_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut conn = connect(url).await?;
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    Ok(with_database(url, name))
}

/// Drop database `name` (connected through `url`, which must name another database).
pub(crate) async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = connect(url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    conn.close().await.ok();
    Ok(())
}

/// One reading of the database's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// `pg_stat_database.xact_commit` of the benchmark database.
    pub commits: i64,
    /// `pg_current_wal_lsn()` as bytes since 0/0 (server-wide).
    pub wal: f64,
}

/// A connection for readings, opened once so that reading costs no connection set-up.
#[derive(Debug)]
pub(crate) struct Stats {
    conn: PgConnection,
    database: String,
}

impl Stats {
    pub(crate) async fn open(url: &str) -> anyhow::Result<Stats> {
        let mut conn = connect(url).await?;
        let database: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await?;
        Ok(Stats { conn, database })
    }

    /// Read the counters after `settle`: PostgreSQL backends report their transaction counts
    /// lazily (PostgreSQL 15: a backend that flushed less than 1 s ago and then goes idle
    /// reports after 10 s of idleness), so an early reading misses the last commits.
    pub(crate) async fn read(&mut self, settle: Duration) -> anyhow::Result<Reading> {
        tokio::time::sleep(settle).await;
        sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut self.conn).await?;
        let (commits, wal): (i64, f64) = sqlx::query_as(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1), \
                    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8",
        )
        .bind(&self.database)
        .fetch_one(&mut self.conn)
        .await
        .context("reading pg_stat_database and the WAL position")?;
        Ok(Reading { commits, wal })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten_and_redacted() {
        assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
