//! inventory.v1.Inventory: all-or-nothing reserves, expiry, commit, release, tombstones and
//! the no-oversell guarantee under concurrency.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_participants::kit::clock::Clock;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::inventory::v1::{
    CommitRequest, GetStockRequest, Item, ReleaseRequest, ReserveRequest, RestockRequest,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::common::{Db, Harness, assert_refused, compensating, keyed, metadata};

fn item(sku: &str, quantity: u32) -> Item {
    Item { sku: sku.into(), quantity, unit_price_cents: 100 }
}

fn reserve(order: &str, items: Vec<Item>) -> ReserveRequest {
    ReserveRequest { order_id: order.into(), items, ttl_seconds: 0 }
}

async fn restock(client: &mut InventoryClient<Channel>, sku: &str, quantity: u32) {
    client
        .restock(keyed(RestockRequest { sku: sku.into(), quantity }, &format!("restock-{sku}-{quantity}")))
        .await
        .expect("restock");
}

/// (available, reserved, committed)
async fn stock(client: &mut InventoryClient<Channel>, sku: &str) -> (i64, i64, i64) {
    let s = client.get_stock(GetStockRequest { sku: sku.into() }).await.expect("get stock").into_inner();
    (s.available, s.reserved, s.committed)
}

async fn reserve_is_all_or_nothing(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "A", 5).await;
    restock(&mut client, "B", 1).await;
    let refused =
        client.reserve(keyed(reserve("o-1", vec![item("A", 2), item("B", 2)]), "k-1")).await.expect_err("B is short");
    assert_refused(&refused, "Inventory.OutOfStock");
    assert_eq!(metadata(&refused, "sku"), "B");
    assert_eq!(metadata(&refused, "requested"), "2");
    assert_eq!(metadata(&refused, "available"), "1");
    assert!(refused.message().contains('B'));
    assert_eq!(stock(&mut client, "A").await, (5, 0, 0));
    assert_eq!(stock(&mut client, "B").await, (1, 0, 0));

    let unknown = client
        .reserve(keyed(reserve("o-1", vec![item("A", 1), item("NOPE", 1)]), "k-2"))
        .await
        .expect_err("unknown SKU");
    assert_refused(&unknown, "Inventory.UnknownSku");
    assert_eq!(metadata(&unknown, "sku"), "NOPE");

    // Repeated SKUs add up.
    let ok = client
        .reserve(keyed(reserve("o-1", vec![item("A", 2), item("A", 3), item("B", 1)]), "k-3"))
        .await
        .expect("everything available")
        .into_inner();
    assert!(ok.reservation_id.starts_with("res_"));
    assert_eq!(stock(&mut client, "A").await, (0, 5, 0));
    assert_eq!(stock(&mut client, "B").await, (0, 1, 0));

    let missing = client.get_stock(GetStockRequest { sku: "NOPE".into() }).await.expect_err("unknown SKU");
    assert_eq!(missing.code(), Code::NotFound);
    h.stop().await;
}

async fn expired_reservations_return_their_stock(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "MUG", 5).await;
    let reservation =
        client.reserve(keyed(reserve("o-2", vec![item("MUG", 3)]), "k-reserve")).await.expect("reserve").into_inner();
    let expires = reservation.expires_at.expect("expiry");
    assert_eq!(expires.seconds - h.clock.now().timestamp(), 30 * 60);
    assert_eq!(stock(&mut client, "MUG").await, (2, 3, 0));

    h.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(stock(&mut client, "MUG").await, (2, 3, 0));
    h.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(stock(&mut client, "MUG").await, (5, 0, 0));

    let late = client
        .commit(keyed(
            CommitRequest { order_id: "o-2".into(), reservation_id: reservation.reservation_id.clone() },
            "k-commit",
        ))
        .await
        .expect_err("expired");
    assert_refused(&late, "Inventory.ReservationExpired");
    assert_eq!(stock(&mut client, "MUG").await, (5, 0, 0));
    h.stop().await;
}

async fn commit_on_an_expired_reservation_expires_it_there(db: Db) {
    // No GetStock in between and no periodic sweep: the Commit itself finds the
    // reservation past its TTL, refuses it and returns its stock in the same transaction.
    let h = Harness::start_with(db, |o| o.expiry_sweep_interval = Duration::from_secs(3600)).await;
    let mut client = h.inventory().await;
    restock(&mut client, "TEE", 4).await;
    client
        .reserve(keyed(ReserveRequest { order_id: "o-3".into(), items: vec![item("TEE", 4)], ttl_seconds: 60 }, "k-r"))
        .await
        .expect("reserve");
    h.clock.advance(Duration::from_secs(61));
    let late = client
        .commit(keyed(CommitRequest { order_id: "o-3".into(), ..Default::default() }, "k-c"))
        .await
        .expect_err("expired");
    assert_refused(&late, "Inventory.ReservationExpired");
    assert_eq!(stock(&mut client, "TEE").await, (4, 0, 0));
    h.stop().await;
}

async fn commit_moves_reserved_to_committed_and_release_gives_it_back(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "POSTER", 10).await;
    let reservation = client
        .reserve(keyed(reserve("o-4", vec![item("POSTER", 4)]), "k-reserve"))
        .await
        .expect("reserve")
        .into_inner();
    let committed = client
        .commit(keyed(CommitRequest { order_id: "o-4".into(), ..Default::default() }, "k-commit"))
        .await
        .expect("commit")
        .into_inner();
    assert_eq!(committed.reservation_id, reservation.reservation_id);
    assert_eq!(stock(&mut client, "POSTER").await, (6, 0, 4));
    // Committed stock does not expire.
    h.clock.advance(Duration::from_secs(3600));
    assert_eq!(stock(&mut client, "POSTER").await, (6, 0, 4));

    let released = client
        .release(compensating(
            ReleaseRequest { order_id: "o-4".into(), ..Default::default() },
            "k-release",
            "k-reserve",
        ))
        .await
        .expect("release")
        .into_inner();
    assert_eq!(released.reservation_id, reservation.reservation_id);
    assert!(!released.no_op);
    assert_eq!(stock(&mut client, "POSTER").await, (10, 0, 0));
    h.stop().await;
}

async fn release_undoes_exactly_the_keyed_reservation(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "MUG", 10).await;
    let first =
        client.reserve(keyed(reserve("o-5", vec![item("MUG", 2)]), "k-first")).await.expect("reserve").into_inner();
    client.reserve(keyed(reserve("o-5", vec![item("MUG", 3)]), "k-second")).await.expect("reserve");
    let released = client
        .release(compensating(
            ReleaseRequest { order_id: "o-5".into(), ..Default::default() },
            "k-undo-first",
            "k-first",
        ))
        .await
        .expect("release")
        .into_inner();
    assert_eq!(released.reservation_id, first.reservation_id);
    assert_eq!(stock(&mut client, "MUG").await, (7, 3, 0));
    // Releasing it again gives back nothing more.
    let again = client
        .release(compensating(
            ReleaseRequest { order_id: "o-5".into(), ..Default::default() },
            "k-undo-first-2",
            "k-first",
        ))
        .await
        .expect("release again")
        .into_inner();
    assert!(again.no_op);
    assert_eq!(stock(&mut client, "MUG").await, (7, 3, 0));
    // Without saga-compensates, the order's held reservations are released.
    let by_order = client
        .release(keyed(ReleaseRequest { order_id: "o-5".into(), ..Default::default() }, "k-undo-order"))
        .await
        .expect("release by order")
        .into_inner();
    assert!(!by_order.no_op);
    assert_eq!(stock(&mut client, "MUG").await, (10, 0, 0));
    h.stop().await;
}

async fn releasing_a_reserve_never_made_leaves_a_tombstone(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "MUG", 3).await;
    let released = client
        .release(compensating(
            ReleaseRequest { order_id: "o-6".into(), ..Default::default() },
            "k-release",
            "k-reserve",
        ))
        .await
        .expect("no-op release")
        .into_inner();
    assert!(released.no_op);
    let late = client
        .reserve(keyed(reserve("o-6", vec![item("MUG", 1)]), "k-reserve"))
        .await
        .expect_err("late reserve refused");
    assert_refused(&late, "Saga.AlreadyCompensated");
    assert_eq!(stock(&mut client, "MUG").await, (3, 0, 0));
    h.stop().await;
}

async fn concurrent_reserves_never_oversell(db: Db) {
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "LAST", 5).await;
    let calls = (0..20).map(|i| {
        let mut client = client.clone();
        async move { client.reserve(keyed(reserve(&format!("o-{i}"), vec![item("LAST", 1)]), &format!("k-{i}"))).await }
    });
    let results = futures::future::join_all(calls).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 5, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_refused(refused, "Inventory.OutOfStock");
    }
    assert_eq!(stock(&mut client, "LAST").await, (0, 5, 0));
    h.stop().await;
}

async fn concurrent_multi_sku_reserves_and_retries_apply_once_and_never_oversell(db: Db) {
    // Orders ask for overlapping pairs of SKUs listed in either order, and every call is sent
    // twice with its key: no deadlock, no oversell, each key reserves at most once.
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    for sku in ["PAIR-A", "PAIR-B", "PAIR-C"] {
        restock(&mut client, sku, 6).await;
    }
    let pairs = [("PAIR-A", "PAIR-B"), ("PAIR-B", "PAIR-A"), ("PAIR-B", "PAIR-C"), ("PAIR-C", "PAIR-A")];
    let calls = (0..48).map(|n| {
        let i = n / 2;
        let (first, second) = pairs[i % pairs.len()];
        let request = reserve(&format!("o-{i}"), vec![item(first, 1), item(second, 1)]);
        let mut client = client.clone();
        async move { (i, client.reserve(keyed(request, &format!("pair-{i}"))).await) }
    });
    let results = futures::future::join_all(calls).await;
    let mut reserved_by_key = std::collections::BTreeMap::new();
    for (i, result) in &results {
        match result {
            Ok(response) => {
                let id = response.get_ref().reservation_id.clone();
                let first = reserved_by_key.entry(*i).or_insert_with(|| id.clone());
                assert_eq!(*first, id, "a retried key must replay the same reservation");
            }
            Err(refused) => assert_refused(refused, "Inventory.OutOfStock"),
        }
    }
    let mut held = 0;
    for sku in ["PAIR-A", "PAIR-B", "PAIR-C"] {
        let (available, reserved, committed) = stock(&mut client, sku).await;
        assert_eq!(available + reserved, 6, "{sku}: stock must be conserved");
        assert_eq!(committed, 0);
        held += reserved;
    }
    assert_eq!(held, 2 * reserved_by_key.len() as i64, "each reservation holds two units");
    h.stop().await;
}

async fn the_demo_catalog_seeds_idempotently(db: Db) {
    let h = Harness::start(db).await;
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    sagaflow_participants::seed_demo_catalog(&h.backend, clock.clone()).await.expect("seed");
    let mut client = h.inventory().await;
    assert_eq!(stock(&mut client, "SKU-SOLD-OUT").await, (0, 0, 0));
    let before = stock(&mut client, "SKU-RED-MUG").await;
    assert!(before.0 > 0);
    client.reserve(keyed(reserve("o-7", vec![item("SKU-RED-MUG", 2)]), "k-7")).await.expect("reserve");
    sagaflow_participants::seed_demo_catalog(&h.backend, clock).await.expect("seed again");
    assert_eq!(stock(&mut client, "SKU-RED-MUG").await, (before.0 - 2, 2, 0));
    let sold_out =
        client.reserve(keyed(reserve("o-7", vec![item("SKU-SOLD-OUT", 1)]), "k-8")).await.expect_err("sold out");
    assert_refused(&sold_out, "Inventory.OutOfStock");
    h.stop().await;
}

async fn the_database_refuses_negative_stock(db: Db) {
    // The CHECK constraints are the last guard: even a store call that bypasses the
    // service's checks cannot take stock below zero.
    let h = Harness::start(db).await;
    let mut client = h.inventory().await;
    restock(&mut client, "GUARD", 1).await;
    let store = h.backend.inventory_store();
    let mut tx = store.begin(&[]).await.expect("begin");
    let oversold = tx.adjust_stock("GUARD", -2, 2, 0, h.clock.now()).await;
    assert!(oversold.is_err(), "{oversold:?}");
    drop(tx);
    assert_eq!(stock(&mut client, "GUARD").await, (1, 0, 0));
    h.stop().await;
}

on_both_backends!(
    reserve_is_all_or_nothing,
    expired_reservations_return_their_stock,
    commit_on_an_expired_reservation_expires_it_there,
    commit_moves_reserved_to_committed_and_release_gives_it_back,
    release_undoes_exactly_the_keyed_reservation,
    releasing_a_reserve_never_made_leaves_a_tombstone,
    concurrent_reserves_never_oversell,
    concurrent_multi_sku_reserves_and_retries_apply_once_and_never_oversell,
    the_demo_catalog_seeds_idempotently,
    the_database_refuses_negative_stock,
);

/// The Reserve's one statement runs on its generic plan after the first five calls of a
/// connection, through a re-planning after ANALYZE too. With its item arrays visible to the
/// planner, PostgreSQL re-planned it on every call under the benchmark's load (0.3 ms of a
/// 0.6 ms call; its log showed bind at 0.29 ms, 0.035 ms since). That choice depends on the
/// tables' statistics at the time and did not happen on this test's small tables, so this
/// test holds the statement to the property rather than replaying the load. PostgreSQL only.
#[tokio::test]
async fn the_reserve_statement_settles_on_a_generic_plan() {
    use sagaflow_participants::inventory::store::{
        InventoryStore, PgInventoryStore, ReservationRow, ReservationStatus, migrate,
    };
    use sagaflow_participants::kit::idempotency::CallKey;

    let db = crate::common::TestDb::create().await;
    // One connection, so every call and the look at its prepared statements share a session.
    let pool = db.pool(1).await;
    migrate(&pool).await.expect("migrate");
    let store = PgInventoryStore::new(pool.clone());
    let now = chrono::Utc::now();
    // A catalogue the size of the benchmark's: the planner's choice depends on it.
    for sku in 0..64 {
        store.seed_sku(&format!("PLAN-{sku:02}"), 100, now).await.expect("seed");
    }
    // PostgreSQL plans the first five executions of a prepared statement on their own.
    for i in 0..400 {
        if i == 300 {
            sqlx::query("ANALYZE").execute(&pool).await.expect("analyze");
        }
        let call = CallKey {
            method: "inventory.v1.Inventory/Reserve",
            key: format!("plan-{i}"),
            compensates: None,
            request_hash: "h".into(),
        };
        let reservation = ReservationRow {
            reservation_id: format!("res-plan-{i}"),
            order_id: format!("o-plan-{i}"),
            idempotency_key: call.key.clone(),
            status: ReservationStatus::Held,
            expires_at: now + chrono::Duration::hours(1),
        };
        let applied =
            store.reserve_once(&call, &reservation, &[(format!("PLAN-{:02}", i % 64), 1)], b"answer", now).await;
        assert!(applied.expect("reserve"), "reserve {i} applied");
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE '%wanted AS%' AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_one(&pool)
    .await
    .expect("the Reserve statement is prepared on the connection");
    assert_eq!((generic, custom), (395, 5), "generic and custom plans of 400 Reserves");
    pool.close().await;
    db.drop_db().await;
}
