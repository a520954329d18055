//! Generated gRPC code for every Sagaflow contract, one module per protobuf package, and the
//! encoded descriptor set that servers publish through gRPC reflection.
//!
//! # Layout
//! - [`sagaflow::v1`]: the orchestrator API (OrderService, SagaService).
//! - [`payment::v1`], [`inventory::v1`], [`fraud::v1`], [`fulfillment::v1`]: demo participants.
//! - [`participants::v1`]: the Chaos fault-injection service every participant serves.

#![allow(unreachable_pub, missing_debug_implementations, clippy::all)]

/// Encoded `FileDescriptorSet` of every package here (for reflection services).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

pub mod sagaflow {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/sagaflow.v1.rs"));
    }
}

pub mod payment {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/payment.v1.rs"));
    }
}

pub mod inventory {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/inventory.v1.rs"));
    }
}

pub mod fraud {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/fraud.v1.rs"));
    }
}

pub mod fulfillment {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/fulfillment.v1.rs"));
    }
}

pub mod participants {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/participants.v1.rs"));
    }
}
