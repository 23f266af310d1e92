use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CriError {
    #[error("runtime call {op} failed: {code:?}: {message}")]
    Rpc {
        op: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("runtime call {op} timed out after {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },
    #[error("invalid runtime endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("runtime returned no {what} for {op}")]
    Missing {
        op: &'static str,
        what: &'static str,
    },
    #[error("not found: {0}")]
    NotFound(String),
}

impl CriError {
    pub fn rpc(op: &'static str, s: tonic::Status) -> Self {
        CriError::Rpc {
            op,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CriError::NotFound(_)
                | CriError::Rpc {
                    code: tonic::Code::NotFound,
                    ..
                }
        )
    }

    /// The runtime's own message, for waiting reasons such as CreateContainerError.
    pub fn message(&self) -> String {
        match self {
            CriError::Rpc { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}
