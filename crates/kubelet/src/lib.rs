//! The kubelet binary's library: flags, wiring and serving (upstream `cmd/kubelet/app` and
//! `kubelet.go`'s start-up). `main.rs` only parses flags and runs [`kubelet::run`].

pub mod certificate;
mod cm;
pub mod healthz;
pub mod kubelet;
pub mod logging;
pub mod node_facts;
mod nodeshutdown;
pub mod options;
pub mod server;
pub mod service;
pub mod settings;
pub mod tasks;
