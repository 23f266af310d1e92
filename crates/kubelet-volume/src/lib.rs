//! Volume plugins without the API (upstream `pkg/volume`): what files a configMap, secret,
//! downwardAPI or projected volume holds ([`payload`]), writing them so a reader never sees a
//! half-updated directory ([`atomic_writer`]), and host-side checks: hostPath types and
//! symlink-safe subPaths ([`hostpath`], [`subpath`]).

pub mod atomic_writer;
pub mod hostpath;
pub mod payload;
pub mod subpath;

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A message for the user, as upstream words it (it ends up in a FailedMount event).
    #[error("{0}")]
    Invalid(String),
    /// A downwardAPI item that cannot be resolved.
    #[error(transparent)]
    Env(#[from] kubelet_core::envvars::EnvError),
    /// `kind` is configmap or secret, as upstream's message has it.
    #[error("{kind} {name:?} not found")]
    SourceNotFound { kind: &'static str, name: String },
    /// An item names a key its ConfigMap or Secret does not have; `message` is upstream's
    /// wording for the kind.
    #[error("{message}: {key}")]
    MissingKey { message: &'static str, key: String },
    #[error("container {0:?} not found in the pod")]
    ContainerNotFound(String),
    #[error("service account token not fetched")]
    TokenNotFetched,
}

impl VolumeError {
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
        let path = path.to_path_buf();
        move |source| VolumeError::Io { op, path, source }
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// Upstream's plugin names, escaped as in the pod directory (`/` becomes `~`).
pub const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP: &str = "kubernetes.io~configmap";
pub const SECRET: &str = "kubernetes.io~secret";
pub const DOWNWARD_API: &str = "kubernetes.io~downward-api";
pub const PROJECTED: &str = "kubernetes.io~projected";

/// `<root>/pods/<uid>/volumes/<plugin>/<name>`.
pub fn volume_dir(root: &Path, uid: &str, plugin: &str, name: &str) -> PathBuf {
    root.join("pods")
        .join(uid)
        .join("volumes")
        .join(plugin)
        .join(name)
}
