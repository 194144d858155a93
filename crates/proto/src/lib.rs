//! Generated code for every Switchyard protobuf contract (`proto/switchyard/**`), one module
//! per package. Nothing but generated code and the descriptor set used by gRPC reflection.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("switchyard.common.v1");
    }
}

pub mod events {
    pub mod v1 {
        tonic::include_proto!("switchyard.events.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("switchyard.audit.v1");
    }
}

pub mod controlplane {
    pub mod v1 {
        tonic::include_proto!("switchyard.controlplane.v1");
    }
}

pub mod scheduler {
    pub mod v1 {
        tonic::include_proto!("switchyard.scheduler.v1");
    }
}

pub mod monitoring {
    pub mod v1 {
        tonic::include_proto!("switchyard.monitoring.v1");
    }
}
