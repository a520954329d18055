//! `inventory.v1.Inventory`: all-or-nothing reservations that expire after a TTL, releases
//! that undo exactly the keyed reservation (or the order's held ones), commits, restocks and
//! stock reads. Stock never goes negative: the code checks under row locks and the schema's
//! CHECK constraints refuse anything that slips through.

pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message;
use sagaflow_proto::inventory::v1::inventory_server::Inventory;
use sagaflow_proto::inventory::v1::{
    CommitRequest, CommitResponse, GetStockRequest, GetStockResponse, Item, ReleaseRequest, ReleaseResponse,
    ReserveRequest, ReserveResponse, RestockRequest, RestockResponse, StockLevel,
};
use tonic::{Code, Request, Response, Status};

use crate::kit::clock::Clock;
use crate::kit::error::{Refusal, ServiceError};
use crate::kit::idempotency::{self, CallKey, Forward};
use crate::kit::store::StoreError;
use crate::kit::{new_id, require};
use store::{InventoryStore, InventoryTx, ReservationRow, ReservationStatus, StockRow};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "inventory.v1.Inventory";
const RESERVE: &str = "inventory.v1.Inventory/Reserve";
const RELEASE: &str = "inventory.v1.Inventory/Release";
const COMMIT: &str = "inventory.v1.Inventory/Commit";
const RESTOCK: &str = "inventory.v1.Inventory/Restock";

/// `Inventory.OutOfStock`
pub const OUT_OF_STOCK: &str = "Inventory.OutOfStock";
/// `Inventory.UnknownSku`
pub const UNKNOWN_SKU: &str = "Inventory.UnknownSku";
/// `Inventory.ReservationExpired`
pub const RESERVATION_EXPIRED: &str = "Inventory.ReservationExpired";
/// `Inventory.ReservationReleased`: a Commit of a reservation that was given back.
pub const RESERVATION_RELEASED: &str = "Inventory.ReservationReleased";
/// `Inventory.ReservationNotFound`: a Commit that names no reservation the service knows.
pub const RESERVATION_NOT_FOUND: &str = "Inventory.ReservationNotFound";

/// The reservation TTL when a Reserve call asks for none (DESIGN §6: 30 minutes).
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

/// The demo catalog: SKUs and their initial available stock. `SKU-SOLD-OUT` has none, for
/// out-of-stock demos.
pub const DEMO_CATALOG: &[(&str, i64)] = &[
    ("SKU-RED-MUG", 100),
    ("SKU-BLUE-MUG", 100),
    ("SKU-TEE-M", 50),
    ("SKU-TEE-L", 50),
    ("SKU-POSTER", 25),
    ("SKU-SOLD-OUT", 0),
];

/// Due reservations expired per round of a sweep.
const SWEEP_BATCH: i64 = 100;
/// Rounds per sweep; a sweep that does not catch up finishes on its next run.
const SWEEP_ROUNDS: usize = 10;

/// The inventory service.
#[derive(Debug, Clone)]
pub struct InventoryService {
    store: Arc<dyn InventoryStore>,
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
}

/// Stock count changes per SKU: (available, reserved, committed). A BTreeMap so that rows
/// are locked in SKU order, the order every transaction uses.
type Deltas = BTreeMap<String, (i64, i64, i64)>;

impl InventoryService {
    pub fn new(store: Arc<dyn InventoryStore>, clock: Arc<dyn Clock>, default_ttl: Duration) -> Self {
        Self { store, clock, default_ttl }
    }

    /// Creates the demo catalog's SKUs that do not exist yet (existing stock is left alone,
    /// so seeding twice changes nothing).
    pub async fn seed_demo_catalog(&self) -> Result<(), StoreError> {
        for (sku, available) in DEMO_CATALOG {
            if self.store.seed_sku(sku, *available, self.clock.now()).await? {
                tracing::info!(sku, available, "seeded demo SKU");
            }
        }
        Ok(())
    }

    /// Expires every held reservation past its TTL, returning its stock to available.
    /// Runs lazily before calls that read or take stock, and periodically from the server.
    pub async fn expire_due_reservations(&self) -> Result<u64, StoreError> {
        let mut expired = 0;
        for _ in 0..SWEEP_ROUNDS {
            let now = self.clock.now();
            let due = self.store.due_reservations(now, SWEEP_BATCH).await?;
            for reservation_id in &due {
                if self.expire_one(reservation_id, now).await? {
                    expired += 1;
                }
            }
            if (due.len() as i64) < SWEEP_BATCH {
                break;
            }
        }
        if expired > 0 {
            tracing::info!(expired, "expired reservations returned their stock");
        }
        Ok(expired)
    }

    async fn expire_one(&self, reservation_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.store.begin(&[]).await?;
        let Some(reservation) = tx.reservation_for_update(reservation_id).await? else {
            return Ok(false);
        };
        // Another call may have released, committed or expired it since it was listed.
        if reservation.status != ReservationStatus::Held || reservation.expires_at > now {
            return Ok(false);
        }
        let mut deltas = Deltas::new();
        give_back(&mut *tx, &reservation, &mut deltas).await?;
        apply_deltas(&mut *tx, &deltas, now).await?;
        tx.set_reservation_status(reservation_id, ReservationStatus::Expired, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn reserve_in(
        &self,
        tx: &mut dyn InventoryTx,
        call: &CallKey,
        order_id: &str,
        items: &BTreeMap<String, i64>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Result<ReserveResponse, Refusal>, ServiceError> {
        // Lock every SKU first (in SKU order), then decide: all or nothing.
        let mut levels: Vec<(StockRow, i64)> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for (sku, quantity) in items {
            match tx.stock_for_update(sku).await? {
                Some(level) => levels.push((level, *quantity)),
                None => unknown.push(sku),
            }
        }
        if let Some(first) = unknown.first() {
            return Ok(Err(Refusal::new(
                UNKNOWN_SKU,
                format!("unknown SKU {}; check the SKU or restock it first", unknown.join(", ")),
            )
            .with("sku", first)));
        }
        let short: Vec<&(StockRow, i64)> =
            levels.iter().filter(|(level, quantity)| level.available < *quantity).collect();
        if let Some((first, requested)) = short.first() {
            let detail: Vec<String> = short
                .iter()
                .map(|(level, quantity)| format!("{} (requested {quantity}, available {})", level.sku, level.available))
                .collect();
            return Ok(Err(Refusal::new(
                OUT_OF_STOCK,
                format!("out of stock: {}; nothing was reserved", detail.join(", ")),
            )
            .with("sku", &first.sku)
            .with("requested", requested)
            .with("available", first.available)));
        }

        let mut deltas = Deltas::new();
        for (level, quantity) in &levels {
            deltas.insert(level.sku.clone(), (-quantity, *quantity, 0));
        }
        apply_deltas(tx, &deltas, now).await?;
        let ttl = chrono::Duration::from_std(ttl).map_err(|_| ServiceError::invalid("ttl_seconds", "is too large"))?;
        let reservation = ReservationRow {
            reservation_id: new_id("res"),
            order_id: order_id.to_owned(),
            idempotency_key: call.key.clone(),
            status: ReservationStatus::Held,
            expires_at: now + ttl,
        };
        let items: Vec<(String, i64)> = items.iter().map(|(s, q)| (s.clone(), *q)).collect();
        tx.insert_reservation(&reservation, &items, now).await?;
        Ok(Ok(ReserveResponse {
            reservation_id: reservation.reservation_id,
            expires_at: Some(timestamp(reservation.expires_at)),
        }))
    }

    /// The reservations a Release call undoes, locked. Leaves a tombstone when it
    /// compensates a Reserve key that was never seen.
    async fn release_targets(
        &self,
        tx: &mut dyn InventoryTx,
        call: &CallKey,
        req: &ReleaseRequest,
        now: DateTime<Utc>,
    ) -> Result<Vec<ReservationRow>, ServiceError> {
        if let Some(forward) = &call.compensates {
            return Ok(match idempotency::forward_state(tx, forward).await? {
                Forward::Applied => tx.reservation_by_key_for_update(forward).await?.into_iter().collect(),
                Forward::NothingApplied => Vec::new(),
                Forward::NeverSeen => {
                    idempotency::leave_tombstone(tx, forward, RESERVE, call, now).await?;
                    Vec::new()
                }
            });
        }
        if !req.reservation_id.is_empty() {
            let reservation = tx.reservation_for_update(&req.reservation_id).await?;
            check_order(reservation.as_ref(), &req.order_id)?;
            return Ok(reservation.into_iter().collect());
        }
        Ok(tx.order_reservations_for_update(&req.order_id, ReservationStatus::Held).await?)
    }

    async fn commit_in(
        &self,
        tx: &mut dyn InventoryTx,
        req: &CommitRequest,
        now: DateTime<Utc>,
    ) -> Result<Result<CommitResponse, Refusal>, ServiceError> {
        let target = if !req.reservation_id.is_empty() {
            let reservation = tx.reservation_for_update(&req.reservation_id).await?;
            check_order(reservation.as_ref(), &req.order_id)?;
            reservation
        } else {
            // The order's newest held reservation; failing that, its newest committed one
            // (committing again is success, not an error).
            let held = tx.order_reservations_for_update(&req.order_id, ReservationStatus::Held).await?;
            match held.into_iter().last() {
                Some(r) => Some(r),
                None => tx
                    .order_reservations_for_update(&req.order_id, ReservationStatus::Committed)
                    .await?
                    .into_iter()
                    .last(),
            }
        };
        let Some(reservation) = target else {
            return Ok(Err(Refusal::new(
                RESERVATION_NOT_FOUND,
                format!(
                    "no reservation to commit for order {:?}{}; reserve the items first",
                    req.order_id,
                    if req.reservation_id.is_empty() {
                        String::new()
                    } else {
                        format!(" with id {:?}", req.reservation_id)
                    }
                ),
            )
            .with("order_id", &req.order_id)));
        };
        let id = reservation.reservation_id.clone();
        let expired = || {
            Refusal::new(
                RESERVATION_EXPIRED,
                format!("reservation {id} expired before it was committed; its stock was returned; reserve again"),
            )
            .with("reservation_id", &id)
        };
        match reservation.status {
            ReservationStatus::Committed => {}
            ReservationStatus::Expired => return Ok(Err(expired())),
            ReservationStatus::Released => {
                return Ok(Err(Refusal::new(
                    RESERVATION_RELEASED,
                    format!("reservation {id} was released; reserve again"),
                )
                .with("reservation_id", &id)));
            }
            ReservationStatus::Held if reservation.expires_at <= now => {
                // Expire it here rather than leave it for the sweep: the refusal and the
                // returned stock commit together.
                let mut deltas = Deltas::new();
                give_back(tx, &reservation, &mut deltas).await?;
                apply_deltas(tx, &deltas, now).await?;
                tx.set_reservation_status(&id, ReservationStatus::Expired, now).await?;
                return Ok(Err(expired()));
            }
            ReservationStatus::Held => {
                let mut deltas = Deltas::new();
                for (sku, quantity) in tx.reservation_items(&id).await? {
                    let d = deltas.entry(sku).or_default();
                    d.1 -= quantity;
                    d.2 += quantity;
                }
                apply_deltas(tx, &deltas, now).await?;
                tx.set_reservation_status(&id, ReservationStatus::Committed, now).await?;
            }
        }
        Ok(Ok(CommitResponse { reservation_id: id }))
    }
}

/// Adds what a held or committed reservation holds back to available (into `deltas`).
async fn give_back(
    tx: &mut dyn InventoryTx,
    reservation: &ReservationRow,
    deltas: &mut Deltas,
) -> Result<bool, StoreError> {
    let from_reserved = match reservation.status {
        ReservationStatus::Held => true,
        ReservationStatus::Committed => false,
        ReservationStatus::Released | ReservationStatus::Expired => return Ok(false),
    };
    for (sku, quantity) in tx.reservation_items(&reservation.reservation_id).await? {
        let d = deltas.entry(sku).or_default();
        d.0 += quantity;
        if from_reserved {
            d.1 -= quantity;
        } else {
            d.2 -= quantity;
        }
    }
    Ok(true)
}

async fn apply_deltas(tx: &mut dyn InventoryTx, deltas: &Deltas, now: DateTime<Utc>) -> Result<(), StoreError> {
    for (sku, (available, reserved, committed)) in deltas {
        tx.adjust_stock(sku, *available, *reserved, *committed, now).await?;
    }
    Ok(())
}

fn check_order(reservation: Option<&ReservationRow>, order_id: &str) -> Result<(), ServiceError> {
    match reservation {
        Some(r) if !order_id.is_empty() && r.order_id != order_id => Err(ServiceError::invalid(
            "reservation_id",
            format!("reservation {} belongs to another order", r.reservation_id),
        )),
        _ => Ok(()),
    }
}

/// Validates the items and adds up repeated SKUs.
fn merge_items(items: &[Item]) -> Result<BTreeMap<String, i64>, ServiceError> {
    if items.is_empty() {
        return Err(ServiceError::invalid("items", "must list at least one item"));
    }
    let mut merged = BTreeMap::new();
    for item in items {
        require("items.sku", &item.sku)?;
        if item.quantity == 0 {
            return Err(ServiceError::invalid("items.quantity", format!("must be greater than 0 (SKU {})", item.sku)));
        }
        *merged.entry(item.sku.clone()).or_insert(0) += i64::from(item.quantity);
    }
    Ok(merged)
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn reserve(&self, request: Request<ReserveRequest>) -> Result<Response<ReserveResponse>, Status> {
        let call = CallKey::from_request(RESERVE, &request)?;
        let req = request.into_inner();
        require("order_id", &req.order_id)?;
        let items = merge_items(&req.items)?;
        let ttl = match req.ttl_seconds {
            0 => self.default_ttl,
            seconds => Duration::from_secs(u64::from(seconds)),
        };
        {
            let now = self.clock.now();
            let ttl =
                chrono::Duration::from_std(ttl).map_err(|_| ServiceError::invalid("ttl_seconds", "is too large"))?;
            let reservation = ReservationRow {
                reservation_id: new_id("res"),
                order_id: req.order_id.clone(),
                idempotency_key: call.key.clone(),
                status: ReservationStatus::Held,
                expires_at: now + ttl,
            };
            let response = ReserveResponse {
                reservation_id: reservation.reservation_id.clone(),
                expires_at: Some(timestamp(reservation.expires_at)),
            };
            let listed: Vec<(String, i64)> = items.iter().map(|(s, q)| (s.clone(), *q)).collect();
            if self.store.reserve_once(&call, &reservation, &listed, &response.encode_to_vec(), now).await? {
                idempotency::log_applied(&call);
                return Ok(Response::new(response));
            }
            // A seen key, an unknown SKU or too little stock: the locked path below decides.
        }

        // Stock held by expired reservations must be available before refusing for want of
        // stock. Sweeping only then (and retrying once) keeps the sweep's query off the path
        // of every Reserve that finds enough stock anyway.
        let mut swept = false;
        loop {
            let mut tx = self.store.begin(&call.lock_keys()).await?;
            if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
                return Ok(Response::new(idempotency::replay(answer)?));
            }
            let now = self.clock.now();
            let outcome = self.reserve_in(&mut *tx, &call, &req.order_id, &items, ttl, now).await?;
            if !swept && matches!(&outcome, Err(refusal) if refusal.reason == OUT_OF_STOCK) {
                // Roll back (the key's lock goes with it), sweep, decide again.
                drop(tx);
                swept = true;
                self.expire_due_reservations().await?;
                continue;
            }
            return Ok(Response::new(idempotency::close(tx, &call, outcome, now).await?));
        }
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let call = CallKey::from_request(RELEASE, &request)?;
        let req = request.into_inner();
        if call.compensates.is_none() && req.reservation_id.is_empty() {
            require("order_id", &req.order_id)?;
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let targets = self.release_targets(&mut *tx, &call, &req, now).await?;
        let mut deltas = Deltas::new();
        let mut response = ReleaseResponse::default();
        for reservation in &targets {
            if give_back(&mut *tx, reservation, &mut deltas).await? {
                tx.set_reservation_status(&reservation.reservation_id, ReservationStatus::Released, now)
                    .await
                    .map_err(ServiceError::from)?;
                if response.reservation_id.is_empty() {
                    response.reservation_id = reservation.reservation_id.clone();
                }
            }
        }
        apply_deltas(&mut *tx, &deltas, now).await.map_err(ServiceError::from)?;
        response.no_op = response.reservation_id.is_empty();
        Ok(Response::new(idempotency::close(tx, &call, Ok(response), now).await?))
    }

    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let call = CallKey::from_request(COMMIT, &request)?;
        let req = request.into_inner();
        if req.reservation_id.is_empty() {
            require("order_id", &req.order_id)?;
        } else {
            let response = CommitResponse { reservation_id: req.reservation_id.clone() };
            let now = self.clock.now();
            if self.store.commit_once(&call, &req.reservation_id, &req.order_id, &response.encode_to_vec(), now).await?
            {
                idempotency::log_applied(&call);
                return Ok(Response::new(response));
            }
            // A seen key, or a reservation that is not held (or expired, or another order's):
            // the locked path below replays or decides.
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let outcome = self.commit_in(&mut *tx, &req, now).await?;
        Ok(Response::new(idempotency::close(tx, &call, outcome, now).await?))
    }

    async fn restock(&self, request: Request<RestockRequest>) -> Result<Response<RestockResponse>, Status> {
        let call = CallKey::from_request(RESTOCK, &request)?;
        let req = request.into_inner();
        require("sku", &req.sku)?;
        if req.quantity == 0 {
            return Err(ServiceError::invalid("quantity", "must be greater than 0").into());
        }

        let mut tx = self.store.begin(&call.lock_keys()).await?;
        if let Some(answer) = idempotency::open(&mut *tx, &call).await? {
            return Ok(Response::new(idempotency::replay(answer)?));
        }
        let now = self.clock.now();
        let level = tx.restock(&req.sku, i64::from(req.quantity), now).await.map_err(ServiceError::from)?;
        let response = RestockResponse {
            stock: Some(StockLevel {
                sku: level.sku,
                available: level.available,
                reserved: level.reserved,
                committed: level.committed,
            }),
        };
        Ok(Response::new(idempotency::close(tx, &call, Ok(response), now).await?))
    }

    async fn get_stock(&self, request: Request<GetStockRequest>) -> Result<Response<GetStockResponse>, Status> {
        let req = request.into_inner();
        require("sku", &req.sku)?;
        self.expire_due_reservations().await?;
        let level = self.store.stock(&req.sku).await?.ok_or_else(|| {
            ServiceError::from(
                Refusal::new(UNKNOWN_SKU, format!("unknown SKU {}", req.sku))
                    .with("sku", &req.sku)
                    .with_code(Code::NotFound),
            )
        })?;
        Ok(Response::new(GetStockResponse {
            sku: level.sku,
            available: level.available,
            reserved: level.reserved,
            committed: level.committed,
        }))
    }
}
