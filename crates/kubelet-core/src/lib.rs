//! The kubelet's decisions as pure functions over API objects and a runtime snapshot.
//!
//! Nothing in this crate performs IO or reads a clock: callers pass `now`. That keeps the
//! reconciliation rules (upstream `kuberuntime.computePodActions`, `kubelet.getPhase`,
//! `status.Generate*Condition`, `qos.GetPodQOS`, `flowcontrol.Backoff`) unit-testable.

pub mod actions;
pub mod admission;
pub mod backoff;
pub mod certificate;
pub mod clock;
pub mod cm;
pub mod config;
pub mod dns;
pub mod envvars;
pub mod eviction;
pub mod format;
pub mod gc;
pub mod hash;
pub mod hosts;
pub mod images;
pub mod kernel;
pub mod labels;
pub mod logs;
pub mod machine;
pub mod nodeshutdown;
pub mod nodestatus;
pub mod pleg;
pub mod qos;
pub mod quantity;
pub mod runtime;
pub mod security_context;
pub mod stats;
pub mod status;
pub mod sync;
pub mod yaml;
