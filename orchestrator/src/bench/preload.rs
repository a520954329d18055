//! `--preload-completed N`: before the measured window, fill the benchmark database with
//! completed executions, so a run shows whether throughput depends on how much finished work
//! the tables hold (it must not: the hot path touches only active rows and their indexes).
//!
//! The copies are made in SQL from the warm-up's finished sagas, history included, so rows and
//! payloads have the real sizes. Their ids are UUIDs in the v7 layout with a zero timestamp and
//! the copy's number as the random part: older than every real execution (where completed work
//! sits in a long-lived database), never colliding with one, and countable by range, which lets
//! a later run with `--allow-existing-data` top the database up instead of starting over.

use std::time::Instant;

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// Executions copied per transaction: big enough to amortize, small enough that one batch's
/// WAL and locks stay modest.
const BATCH: i64 = 50_000;
/// Distinct finished sagas to copy from.
const TEMPLATES: i64 = 64;
/// Ids of copies lie below this one.
const LAST_COPY_ID: &str = "00000000-0000-7000-8fff-ffffffffffff";

/// What the database holds once preloading is done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Preloaded {
    /// Completed executions in the database (copies and real ones).
    pub completed: i64,
    /// Copies made by this run.
    pub copied: i64,
    /// Bytes of the executions and history tables with their indexes and TOAST.
    pub table_bytes: i64,
}

/// Make sure `url`'s database holds at least `target` completed executions.
pub(crate) async fn preload(url: &str, target: i64) -> anyhow::Result<Preloaded> {
    // Copying takes seconds per statement by design: no slow-statement warnings.
    let options: PgConnectOptions = url.parse().context("parsing the database URL")?;
    let mut conn =
        options.disable_statement_logging().connect().await.context("connecting to preload completed executions")?;
    let completed = count_completed(&mut conn).await?;
    let mut copied = 0;
    if completed < target {
        let first: i64 = sqlx::query_scalar("SELECT count(*) FROM sagaflow.executions WHERE id <= $1::uuid")
            .bind(LAST_COPY_ID)
            .fetch_one(&mut conn)
            .await?;
        let templates = templates(&mut conn).await?;
        let wanted = target - completed;
        let started = Instant::now();
        eprintln!("preloading {wanted} completed executions (copies of {templates} finished sagas, history included)…");
        while copied < wanted {
            let from = first + copied;
            let to = from + BATCH.min(wanted - copied) - 1;
            copy_batch(&mut conn, from, to, templates).await?;
            copied += to - from + 1;
            if copied % (BATCH * 4) == 0 || copied == wanted {
                eprintln!("  {copied}/{wanted} after {:.0} s", started.elapsed().as_secs_f64());
            }
        }
        // Fresh statistics and visibility maps, as a long-lived database would have.
        sqlx::query("VACUUM (ANALYZE) sagaflow.executions, sagaflow.history").execute(&mut conn).await?;
    }
    let completed = count_completed(&mut conn).await?;
    let table_bytes: i64 = sqlx::query_scalar(
        "SELECT (pg_total_relation_size('sagaflow.executions') + pg_total_relation_size('sagaflow.history'))::int8",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(Preloaded { completed, copied, table_bytes })
}

async fn count_completed(conn: &mut PgConnection) -> anyhow::Result<i64> {
    let n = sqlx::query_scalar("SELECT count(*) FROM sagaflow.executions WHERE stopped_at IS NOT NULL")
        .fetch_one(conn)
        .await
        .context("counting completed executions")?;
    Ok(n)
}

/// Number the finished sagas to copy from, in a temporary table of this connection.
async fn templates(conn: &mut PgConnection) -> anyhow::Result<i64> {
    sqlx::query(
        "CREATE TEMPORARY TABLE IF NOT EXISTS preload_templates AS \
         SELECT (row_number() OVER (ORDER BY started_at) - 1)::int8 AS n, id FROM ( \
             SELECT id, started_at FROM sagaflow.executions \
             WHERE stopped_at IS NOT NULL AND id > $1::uuid ORDER BY started_at LIMIT $2) AS finished",
    )
    .bind(LAST_COPY_ID)
    .bind(TEMPLATES)
    .execute(&mut *conn)
    .await
    .context("choosing finished sagas to copy")?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM preload_templates").fetch_one(&mut *conn).await?;
    if n == 0 {
        bail!("no finished saga to copy: the warm-up must run at least one (use --warmup 1 or more)");
    }
    Ok(n)
}

/// Copy numbers `from..=to`, each of template `number % templates`, in one transaction.
async fn copy_batch(conn: &mut PgConnection, from: i64, to: i64, templates: i64) -> anyhow::Result<()> {
    const COPY_ID: &str = "format('00000000-0000-7000-8%s', lpad(to_hex(g), 15, '0'))::uuid";
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "INSERT INTO sagaflow.executions (id, definition_id, definition_name, definition_version, status, input, \
             output, error, cause, idempotency_key, request_hash, snapshot, started_at, stopped_at, last_event_id, \
             redrive_count, lease_epoch) \
         SELECT {COPY_ID}, e.definition_id, e.definition_name, e.definition_version, e.status, e.input, e.output, \
             e.error, e.cause, 'preloaded-' || g, e.request_hash, e.snapshot, \
             now() - interval '30 days' + g * interval '1 millisecond', \
             now() - interval '30 days' + g * interval '1 millisecond' + (e.stopped_at - e.started_at), \
             e.last_event_id, e.redrive_count, e.lease_epoch \
         FROM generate_series($1::int8, $2::int8) AS g \
         JOIN preload_templates t ON t.n = g % $3 JOIN sagaflow.executions e ON e.id = t.id"
    ))
    .bind(from)
    .bind(to)
    .bind(templates)
    .execute(&mut *tx)
    .await
    .context("copying executions")?;
    sqlx::query(&format!(
        "INSERT INTO sagaflow.history (execution_id, id, \"timestamp\", type, state, details, cause) \
         SELECT {COPY_ID}, h.id, h.\"timestamp\" - interval '30 days', h.type, h.state, h.details, h.cause \
         FROM generate_series($1::int8, $2::int8) AS g \
         JOIN preload_templates t ON t.n = g % $3 JOIN sagaflow.history h ON h.execution_id = t.id"
    ))
    .bind(from)
    .bind(to)
    .bind(templates)
    .execute(&mut *tx)
    .await
    .context("copying history")?;
    tx.commit().await?;
    Ok(())
}
