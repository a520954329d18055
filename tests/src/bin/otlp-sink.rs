//! `otlp-sink [ADDR] [--print]`: the end-to-end harness's OTLP trace receiver as a process, to
//! measure what exporting traces costs (`sagaflow bench` with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointing here) or to look at the spans a run sends (`--print`: one line per span as it
//! arrives). Without `--print` it says how many spans arrived every 10 seconds.

use std::time::Duration;

use sagaflow_e2e::otlp::OtlpReceiver;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let print = args.iter().any(|a| a == "--print");
    let addr = args.iter().find(|a| !a.starts_with("--")).map_or("127.0.0.1:4317", String::as_str).parse()?;
    let receiver = OtlpReceiver::start(addr).await?;
    eprintln!("receiving OTLP traces at {}", receiver.endpoint());
    let mut printed = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(if print { 1 } else { 10 }));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let spans = receiver.spans();
                if print {
                    for s in &spans[printed..] {
                        let ms = s.end_unix_nano.saturating_sub(s.start_unix_nano) as f64 / 1e6;
                        println!(
                            "{} {} parent={} {:<22} {:>8.2}ms {} {:?}",
                            s.trace_id, s.span_id, s.parent_span_id, s.service, ms, s.name, s.attributes
                        );
                    }
                    printed = spans.len();
                } else {
                    eprintln!("{} spans in {} export requests", spans.len(), receiver.requests());
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
