//! Compiles the .proto files with protox (pure Rust, no system `protoc`) and generates the
//! prost messages and tonic services, plus a descriptor set for server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "sagaflow/v1/orders.proto",
    "sagaflow/v1/sagas.proto",
    "payment/v1/payment.proto",
    "inventory/v1/inventory.proto",
    "fraud/v1/fraud.proto",
    "fulfillment/v1/fulfillment.proto",
    "participants/v1/chaos.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    let descriptors = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
