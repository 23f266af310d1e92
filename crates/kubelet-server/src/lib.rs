//! The kubelet's HTTPS API (upstream `pkg/kubelet/server`): TLS 1.2+, x509/token/anonymous
//! authentication, SubjectAccessReview authorization, and the read endpoints (`/healthz`,
//! `/pods`, `/containerLogs`). The kubelet provides its state through [`HostInterface`].

pub mod auth;
#[cfg(any(test, feature = "test-util"))]
pub mod fuzzing;
pub mod listener;
pub mod logs;
pub mod server;
pub mod streaming;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use server::{Bound, HostError, HostInterface, ServerConfig, bind, serve};
pub use streaming::StreamOptions;
