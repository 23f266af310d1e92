//! The one error type of the API side: what the API server answered, or why it could not.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// The API server answered with a failure status (404, 409, 422, ...). The message is
    /// the server's own, so it can be shown to users as upstream shows it.
    #[error("{message}")]
    Status {
        code: u16,
        reason: String,
        message: String,
    },
    /// The request never got an answer (connection, TLS, timeout, decoding).
    #[error("{op}: {source}")]
    Client {
        op: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    /// A watch failed before it could list or resume.
    #[error("watch: {0}")]
    Watch(#[source] Box<kube::runtime::watcher::Error>),
    /// The client's request budget is spent and the caller may not wait for more.
    #[error("{0}")]
    Throttled(&'static str),
}

impl ApiError {
    pub fn status(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError::Status {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::status(404, "NotFound", message)
    }

    /// The HTTP status the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            ApiError::Watch(e) => match e.as_ref() {
                kube::runtime::watcher::Error::InitialListFailed(k)
                | kube::runtime::watcher::Error::WatchStartFailed(k)
                | kube::runtime::watcher::Error::WatchFailed(k) => match k {
                    kube::Error::Api(s) => Some(s.code),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_status(&self, code: u16) -> bool {
        self.code() == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.is_status(404)
    }

    /// Converts a kube error from the named request.
    pub fn from_kube(op: &'static str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ApiError::Status {
                code: s.code,
                reason: s.reason,
                message: s.message,
            },
            e => ApiError::Client {
                op,
                source: Box::new(e),
            },
        }
    }
}

impl From<kube::runtime::watcher::Error> for ApiError {
    fn from(e: kube::runtime::watcher::Error) -> Self {
        ApiError::Watch(Box::new(e))
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: format!("status {code}"),
            reason: "Reason".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn server_answers_keep_their_code_and_message() {
        let e = ApiError::from_kube("get node", api(404));
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some(404));
        assert_eq!(e.to_string(), "status 404");
        assert!(!ApiError::from_kube("get node", api(409)).is_not_found());
    }

    #[test]
    fn a_failed_watch_keeps_the_server_code() {
        let e = ApiError::from(kube::runtime::watcher::Error::InitialListFailed(api(403)));
        assert_eq!(e.code(), Some(403));
        assert!(e.to_string().starts_with("watch: "));
        let e = ApiError::from(kube::runtime::watcher::Error::NoResourceVersion);
        assert_eq!(e.code(), None);
    }

    #[test]
    fn throttling_has_no_code() {
        let e = ApiError::Throttled("client request budget exhausted");
        assert_eq!(e.code(), None);
        assert_eq!(e.to_string(), "client request budget exhausted");
    }
}
