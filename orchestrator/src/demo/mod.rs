//! `sagaflow demo` and `sagaflow dev`: the whole system in one process on embedded storage.
//!
//! The demo runs a batch of orders (good ones, and some failing on purpose) with transient
//! faults injected that Retry absorbs, shows a progress bar, prints a summary and the
//! timeline of one compensated saga, and exits 0 only if every invariant of DESIGN §6 holds.
//!
//! - [`stack`]: participants, engine, store and API in one process.
//! - [`orders`]: the batch of orders, deterministic per seed.
//! - [`invariants`]: money, shipments and stock checked through the participants.

pub mod invariants;
pub mod orders;
pub mod stack;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::{Cell, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use sagaflow_proto::fulfillment::v1::fulfillment_client::FulfillmentClient;
use sagaflow_proto::inventory::v1::inventory_client::InventoryClient;
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::participants::v1::{Fault, SetFaultRequest};
use sagaflow_proto::payment::v1::payment_client::PaymentClient;
use sagaflow_proto::sagaflow::v1::order_service_client::OrderServiceClient;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use self::orders::{IN_STOCK, Kind, SOLD_OUT};
use self::stack::{Stack, StackOptions};

/// Settings of one demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub orders: usize,
    pub concurrency: usize,
    pub seed: u64,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub participants: BTreeMap<String, String>,
    /// Inject transient faults that Retry absorbs.
    pub faults: bool,
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?.connect().await?)
}

/// Transient faults: a fraction of charges and fraud checks fail with UNAVAILABLE, and some
/// shipments are created and then answered with an error (an unknown outcome): the order
/// saga's Retry absorbs all of them, with the same idempotency key.
async fn inject_faults(stack: &Stack) -> anyhow::Result<()> {
    let faults = [
        ("payment", "payment.v1.Payment/Charge", 0.15, false),
        ("fraud", "fraud.v1.Fraud/Check", 0.10, false),
        ("fulfillment", "fulfillment.v1.Fulfillment/CreateShipment", 0.10, true),
    ];
    for (participant, method, rate, apply_then_fail) in faults {
        let mut chaos = ChaosClient::new(channel(&stack.participants[participant]).await?);
        chaos
            .set_fault(SetFaultRequest {
                fault: Some(Fault {
                    method: method.into(),
                    error_rate: rate,
                    error_code: "UNAVAILABLE".into(),
                    apply_then_fail,
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("injecting a fault on {method}"))?;
    }
    Ok(())
}

/// Run the demo; `Ok(true)` when every invariant held.
pub async fn run(options: DemoOptions) -> anyhow::Result<bool> {
    let started = Instant::now();
    let stack = Stack::start(StackOptions {
        data_dir: options.data_dir.clone(),
        database_url: options.database_url.clone(),
        participants: options.participants.clone(),
        listen: "127.0.0.1:0".parse()?,
    })
    .await?;
    println!(
        "Sagaflow demo: {} orders through the order saga (reserve → fraud check → charge → ship → commit)",
        options.orders
    );
    println!("data in {}, API on {}\n", options.data_dir.display(), stack.api_url());
    let result = run_batch(&stack, &options).await;
    let elapsed = started.elapsed();
    stack.shutdown().await;
    let ok = result?;
    println!("\ndemo finished in {:.1} s", elapsed.as_secs_f64());
    Ok(ok)
}

async fn run_batch(stack: &Stack, options: &DemoOptions) -> anyhow::Result<bool> {
    let mut inventory = InventoryClient::new(channel(&stack.participants["inventory"]).await?);
    let mut payment = PaymentClient::new(channel(&stack.participants["payment"]).await?);
    let mut fulfillment = FulfillmentClient::new(channel(&stack.participants["fulfillment"]).await?);
    let skus: Vec<&str> = IN_STOCK.iter().copied().chain([SOLD_OUT]).collect();
    let before = invariants::stock(&mut inventory, &skus).await?;
    if options.faults {
        inject_faults(stack).await?;
    }

    let run_id = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let batch = orders::batch(options.orders, options.seed, &run_id);
    let progress = ProgressBar::new(batch.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} sagas settled  {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let client = OrderServiceClient::new(channel(&stack.api_url()).await?);
    let mut handles = Vec::new();
    for (kind, request) in batch.clone() {
        let limit = limit.clone();
        let mut client = client.clone();
        let progress = progress.clone();
        handles.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            let t = Instant::now();
            let mut r = tonic::Request::new(request);
            r.set_timeout(Duration::from_secs(300));
            let answer = client.start_order(r).await;
            progress.inc(1);
            (kind, answer.map(|a| a.into_inner()), t.elapsed())
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.context("an order task panicked")?);
    }
    progress.finish_and_clear();

    let mut outcomes = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut compensated_example: Option<(Kind, String)> = None;
    for ((kind, request), (_, answer, latency)) in batch.iter().zip(results) {
        let answer = answer.map_err(|s| anyhow::anyhow!("StartOrder {} failed: {}", request.order_id, s.message()))?;
        *by_status.entry(answer.status.clone()).or_default() += 1;
        *by_kind.entry((kind.label(), answer.status.clone())).or_default() += 1;
        latencies.push(latency);
        if answer.status == "COMPENSATED"
            && (compensated_example.is_none()
                || (*kind == Kind::BadAddress
                    && compensated_example.as_ref().is_some_and(|(k, _)| *k != Kind::BadAddress)))
        {
            compensated_example = Some((*kind, answer.execution_id.clone()));
        }
        outcomes.push(invariants::Outcome {
            order_id: request.order_id.clone(),
            amount_cents: orders::amount(request),
            items: request.items.iter().map(|i| (i.sku.clone(), i.quantity)).collect(),
            status: answer.status,
        });
    }
    let (money, violations) =
        invariants::check(&mut payment, &mut fulfillment, &mut inventory, &outcomes, &before).await?;
    let after = invariants::stock(&mut inventory, &skus).await?;

    print_summary(&by_status, &by_kind, &mut latencies, money, &before, &after);
    if let Some((kind, id)) = compensated_example {
        println!("\nTimeline of a compensated saga ({}):\n", kind.label());
        crate::cli::executions::show(crate::cli::executions::ShowArgs {
            id,
            server: crate::cli::client::ServerArgs {
                server: stack.api_url(),
                output: crate::cli::Output::Human,
                security: Default::default(),
            },
        })
        .await?;
    }
    if violations.is_empty() {
        println!(
            "\nevery invariant holds: money charged − refunded = amount for SUCCEEDED orders and 0 for the others; one shipment per SUCCEEDED order; stock conserved, nothing left reserved"
        );
        Ok(true)
    } else {
        println!("\nINVARIANT VIOLATIONS ({}):", violations.len());
        for v in &violations {
            println!("  - {v}");
        }
        Ok(false)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents.rem_euclid(100))
}

fn print_summary(
    by_status: &BTreeMap<String, usize>,
    by_kind: &BTreeMap<(&'static str, String), usize>,
    latencies: &mut [Duration],
    money: invariants::Money,
    before: &BTreeMap<String, invariants::Stock>,
    after: &BTreeMap<String, invariants::Stock>,
) {
    latencies.sort();
    let mut sagas = Table::new();
    sagas.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["orders", "ended", "count"]);
    for ((kind, status), count) in by_kind {
        sagas.add_row(vec![Cell::new(kind), Cell::new(status), Cell::new(count)]);
    }
    println!("{sagas}");
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("statuses: {}", statuses.join(", "));
    println!(
        "saga latency (start to settled): p50 {}, p99 {}, max {}",
        ms(percentile(latencies, 50.0)),
        ms(percentile(latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "money: charged {}, refunded {}, kept {}",
        dollars(money.charged),
        dollars(money.refunded),
        dollars(money.charged - money.refunded)
    );
    let mut stock = Table::new();
    stock.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["sku", "available", "reserved", "committed"]);
    for (sku, (a, r, c)) in before {
        let (a2, r2, c2) = after.get(sku).copied().unwrap_or_default();
        stock.add_row(vec![
            Cell::new(sku),
            Cell::new(format!("{a} → {a2}")),
            Cell::new(format!("{r} → {r2}")),
            Cell::new(format!("{c} → {c2}")),
        ]);
    }
    println!("{stock}");
}

/// `sagaflow dev`: the same stack, left running until Ctrl-C.
pub async fn dev(options: StackOptions) -> anyhow::Result<()> {
    let stack = Stack::start(options.clone()).await?;
    let server = stack.api_url();
    println!("Sagaflow dev stack running (data in {})", options.data_dir.display());
    println!("  API (gRPC, with health and reflection): {server}");
    for (name, url) in &stack.participants {
        println!("  participant {name:<12} {url}");
    }
    println!("\nTry:");
    println!("  export SAGAFLOW_SERVER={server}");
    println!("  sagaflow definitions list");
    let order = r#"{"orderId":"o-1","customerId":"c-1","items":[{"sku":"SKU-RED-MUG","quantity":1,"unitPriceCents":1250}],"currency":"USD","amountCents":1250,"paymentToken":"tok_ok","shippingAddress":{"line1":"1 Main St","city":"Springfield","postalCode":"12345","country":"US"}}"#;
    println!("  sagaflow start order --wait --input '{order}'");
    println!("  sagaflow list");
    println!("  sagaflow show <id prefix>");
    println!("\nCtrl-C stops it.");
    crate::cli::shutdown_signal().await;
    println!("stopping");
    stack.shutdown().await;
    Ok(())
}

pub use stack::StackOptions as DevOptions;
