//! Generated code for the Container Runtime Interface (`runtime.v1`) and the slice of
//! containerd's event API the PLEG subscribes to. See `proto/PROVENANCE.md`.
//! Nothing here is hand-written logic; the client wrapper lives in `kubelet-cri`.

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations
)]
pub mod runtime {
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    missing_debug_implementations
)]
pub mod containerd {
    pub mod events {
        tonic::include_proto!("containerd.services.events.v1");
    }
}

pub use prost_types;
