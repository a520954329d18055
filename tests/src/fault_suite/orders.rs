//! The orders a fault run places, and placing them through whichever replica answers: a mix
//! of good orders and ones that fail on purpose (as `sagaflow demo` places), each started
//! with its order id as the idempotency key, retried on any transient error until a replica
//! acknowledges it, then watched until its saga settles.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::order_service_client::OrderServiceClient;
use sagaflow_proto::sagaflow::v1::saga_service_client::SagaServiceClient;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use crate::invariants::PlacedOrder;

/// SKUs orders draw from: the demo catalog's, restocked before a run.
pub const IN_STOCK: [&str; 5] = ["SKU-RED-MUG", "SKU-BLUE-MUG", "SKU-TEE-M", "SKU-TEE-L", "SKU-POSTER"];
/// The demo catalog's SKU with no stock.
pub const SOLD_OUT: &str = "SKU-SOLD-OUT";

/// Why an order is expected to end as it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Good,
    CardDeclined,
    InsufficientFunds,
    FraudRejected,
    OutOfStock,
    BadAddress,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Good => "good order",
            Kind::CardDeclined => "declined card",
            Kind::InsufficientFunds => "insufficient funds",
            Kind::FraudRejected => "fraud rejection",
            Kind::OutOfStock => "out of stock",
            Kind::BadAddress => "undeliverable address",
        }
    }

    /// Only a good order may succeed; faults may make a good one compensate instead.
    pub fn may_succeed(self) -> bool {
        self == Kind::Good
    }
}

/// Order `i` of run `run`: about two in three are good, the rest fail on purpose.
pub fn order(i: usize, run: &str, rng: &mut impl Rng) -> (Kind, pb::StartOrderRequest) {
    let kind = match i % 12 {
        3 => Kind::CardDeclined,
        5 => Kind::FraudRejected,
        7 => Kind::OutOfStock,
        9 => Kind::BadAddress,
        11 if i % 24 == 23 => Kind::InsufficientFunds,
        _ => Kind::Good,
    };
    let lines = rng.gen_range(1..=2);
    let mut items: Vec<pb::OrderItem> = (0..lines)
        .map(|_| pb::OrderItem {
            sku: IN_STOCK[rng.gen_range(0..IN_STOCK.len())].to_owned(),
            quantity: rng.gen_range(1..=2),
            unit_price_cents: [499, 1250, 1999, 2500][rng.gen_range(0..4)],
        })
        .collect();
    items.sort_by(|a, b| a.sku.cmp(&b.sku));
    items.dedup_by(|a, b| a.sku == b.sku);
    if kind == Kind::OutOfStock {
        items.push(pb::OrderItem { sku: SOLD_OUT.into(), quantity: 1, unit_price_cents: 999 });
    }
    let request = pb::StartOrderRequest {
        order_id: format!("{run}-{i:05}"),
        customer_id: if kind == Kind::FraudRejected { format!("fraud-{i}") } else { format!("cust-{}", i % 17) },
        items,
        currency: "USD".into(),
        payment_token: match kind {
            Kind::CardDeclined => "tok_decline",
            Kind::InsufficientFunds => "tok_insufficient",
            _ => "tok_ok",
        }
        .into(),
        shipping_address: Some(pb::Address {
            line1: format!("{} Main St", 10 + i),
            city: "Springfield".into(),
            postal_code: if kind == Kind::BadAddress { String::new() } else { format!("{:05}", 10000 + i % 90000) },
            country: "US".into(),
        }),
        wait_for_completion: false,
    };
    (kind, request)
}

/// What happened to one order.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub request: pb::StartOrderRequest,
    /// The execution a replica acknowledged, if one did.
    pub execution_id: Option<String>,
    /// StartOrder calls until the acknowledgement (1 when the first one answered).
    pub start_attempts: u32,
    /// The settled status, or the last status seen if it never settled.
    pub status: String,
    /// From the first StartOrder call to the settled status.
    pub latency: Option<Duration>,
    /// Problems seen from the client side (a start refused as a conflict, a different
    /// execution for the same order, an acknowledgement never given).
    pub problems: Vec<String>,
}

impl Outcome {
    /// An order not yet acknowledged.
    fn new(kind: Kind, request: &pb::StartOrderRequest) -> Outcome {
        Outcome {
            kind,
            request: request.clone(),
            execution_id: None,
            start_attempts: 0,
            status: String::new(),
            latency: None,
            problems: Vec::new(),
        }
    }

    pub fn placed(&self) -> PlacedOrder {
        PlacedOrder {
            order_id: self.request.order_id.clone(),
            amount_cents: amount(&self.request),
            items: self.request.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect(),
            status: self.status.clone(),
        }
    }
}

/// The amount the saga charges.
pub fn amount(order: &pb::StartOrderRequest) -> i64 {
    order.items.iter().map(|i| i64::from(i.quantity) * i.unit_price_cents).sum()
}

/// Settled: terminal, or parked for an operator.
pub fn settled(status: &str) -> bool {
    matches!(status, "SUCCEEDED" | "FAILED" | "COMPENSATED" | "CANCELLED" | "TERMINATED" | "COMPENSATION_STUCK")
}

/// Clients of every replica, lazily connected, shared by all orders: a killed replica that
/// comes back on its port is reconnected to on the next call.
#[derive(Debug, Clone)]
pub struct Replicas {
    channels: Arc<Vec<Channel>>,
    next: Arc<AtomicUsize>,
    /// Orders started and not yet settled, and the most seen at once.
    pub in_flight: Arc<AtomicUsize>,
    pub peak_in_flight: Arc<AtomicUsize>,
}

impl Replicas {
    /// Count one more order in flight, keeping the peak.
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
    }

    pub fn new(urls: &[String]) -> anyhow::Result<Replicas> {
        let channels = urls
            .iter()
            .map(|u| {
                Ok(Channel::from_shared(u.clone())?
                    .connect_timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
                    .connect_lazy())
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Replicas {
            channels: Arc::new(channels),
            next: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            peak_in_flight: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next replica's channel, round robin.
    fn pick(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    pub fn sagas(&self) -> SagaServiceClient<Channel> {
        SagaServiceClient::new(self.pick())
    }

    fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.pick())
    }
}

/// How long placing one order may take before it counts as a problem.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Until some replica acknowledges the start.
    pub acknowledge: Duration,
}

/// Statuses that say "try again" (possibly on another replica): the server is down,
/// restarting, cut off, or its database is.
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::Internal | Code::Unknown | Code::Cancelled
    )
}

/// Place one order and follow it until it settles or `give_up` turns true.
pub async fn place(
    replicas: Replicas,
    kind: Kind,
    request: pb::StartOrderRequest,
    limits: Limits,
    mut give_up: watch::Receiver<bool>,
) -> Outcome {
    let began = Instant::now();
    let mut outcome = Outcome::new(kind, &request);
    replicas.enter();
    let mut backoff = Duration::from_millis(100);
    // Acknowledgement: the same order id on every attempt, so at most one saga starts.
    let id = loop {
        outcome.start_attempts += 1;
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(Duration::from_secs(10));
        match replicas.orders().start_order(call).await {
            Ok(answer) => break answer.into_inner().execution_id,
            Err(status) if transient(status.code()) && began.elapsed() < limits.acknowledge => {}
            Err(status) => {
                outcome.problems.push(format!(
                    "order {}: no replica acknowledged the start ({:?}: {}) after {} attempts in {:?}",
                    request.order_id,
                    status.code(),
                    status.message(),
                    outcome.start_attempts,
                    began.elapsed()
                ));
                replicas.in_flight.fetch_sub(1, Ordering::Relaxed);
                return outcome;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    };
    outcome.execution_id = Some(id.clone());
    // Settling: poll any replica; errors while replicas or the database are down are expected.
    loop {
        let pause = Duration::from_millis(rand::thread_rng().gen_range(400..900));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = give_up.wait_for(|g| *g) => break,
        }
        let mut call = tonic::Request::new(pb::DescribeExecutionRequest { execution_id: id.clone() });
        call.set_timeout(Duration::from_secs(5));
        match replicas.sagas().describe_execution(call).await {
            Ok(answer) => {
                outcome.status = answer.into_inner().status;
                if settled(&outcome.status) {
                    outcome.latency = Some(began.elapsed());
                    break;
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                // The acknowledged execution must exist: a replica said so.
                outcome
                    .problems
                    .push(format!("order {}: acknowledged execution {id} does not exist", request.order_id));
                break;
            }
            Err(_) => {}
        }
    }
    replicas.in_flight.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// Place one order and wait for its saga in the same call (`wait_for_completion`), so the
/// replica that runs it answers the moment it settles; a call cut short (a killed replica,
/// the wait's limit) is made again with the same order id, which waits on the same saga.
pub async fn place_and_wait(
    replicas: Replicas,
    kind: Kind,
    request: pb::StartOrderRequest,
    limits: Limits,
    mut give_up: watch::Receiver<bool>,
) -> Outcome {
    let began = Instant::now();
    let mut outcome = Outcome::new(kind, &request);
    replicas.enter();
    let waiting = pb::StartOrderRequest { wait_for_completion: true, ..request.clone() };
    let mut backoff = Duration::from_millis(100);
    loop {
        if outcome.execution_id.is_none() {
            outcome.start_attempts += 1;
        }
        let mut call = tonic::Request::new(waiting.clone());
        call.set_timeout(Duration::from_secs(30));
        let mut client = replicas.orders();
        let answer = tokio::select! {
            answer = client.start_order(call) => answer,
            _ = give_up.wait_for(|g| *g) => break,
        };
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                match &outcome.execution_id {
                    None => outcome.execution_id = Some(answer.execution_id.clone()),
                    Some(first) if *first != answer.execution_id => outcome.problems.push(format!(
                        "order {}: started as {first}, then answered as {}",
                        request.order_id, answer.execution_id
                    )),
                    Some(_) => {}
                }
                outcome.status = answer.status;
                if settled(&outcome.status) {
                    outcome.latency = Some(began.elapsed());
                    break;
                }
                backoff = Duration::from_millis(100);
                continue;
            }
            Err(status) if transient(status.code()) => {
                if outcome.execution_id.is_none() && began.elapsed() > limits.acknowledge {
                    outcome.problems.push(format!(
                        "order {}: no replica acknowledged the start ({:?}: {}) in {:?}",
                        request.order_id,
                        status.code(),
                        status.message(),
                        began.elapsed()
                    ));
                    break;
                }
            }
            Err(status) => {
                outcome.problems.push(format!(
                    "order {}: StartOrder refused: {:?}: {}",
                    request.order_id,
                    status.code(),
                    status.message()
                ));
                break;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    replicas.in_flight.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// Start every order again once the run is over: each must name the execution it was first
/// acknowledged with, and none may start a second saga. Sixteen at a time: a soak places
/// tens of thousands.
pub async fn restart_all(replicas: &Replicas, outcomes: &[Outcome]) -> Vec<String> {
    let mut set = tokio::task::JoinSet::new();
    let mut problems = Vec::new();
    for o in outcomes {
        let Some(first) = o.execution_id.clone() else { continue };
        if set.len() >= 16
            && let Some(Ok(Some(problem))) = set.join_next().await
        {
            problems.push(problem);
        }
        let (replicas, request) = (replicas.clone(), o.request.clone());
        set.spawn(async move {
            let mut answer = None;
            for _ in 0..20 {
                match replicas.orders().start_order(request.clone()).await {
                    Ok(a) => {
                        answer = Some(a.into_inner());
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            match answer {
                Some(a) if a.execution_id == first && !a.created => None,
                Some(a) => Some(format!(
                    "order {}: started again it named execution {} (created: {}), first acknowledged as {first}",
                    request.order_id, a.execution_id, a.created
                )),
                None => Some(format!("order {}: could not be started again to check it", request.order_id)),
            }
        });
    }
    while let Some(done) = set.join_next().await {
        if let Ok(Some(problem)) = done {
            problems.push(problem);
        }
    }
    problems
}
