//! The query of `/containerLogs` (upstream `v1.PodLogOptions` as the kubelet decodes it);
//! reading the CRI log format is `kubelet_cri::logs`.

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

/// `/containerLogs` options upstream's validation refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogOptionsError {
    #[error("tailLines must be greater than or equal to 0")]
    NegativeTail,
    #[error("limitBytes must be greater than 0")]
    NonPositiveLimit,
    #[error("sinceSeconds must be greater than 0")]
    NonPositiveSince,
    #[error("at most one of sinceTime or sinceSeconds may be specified")]
    BothSince,
    #[error("invalid sinceTime {0:?}")]
    SinceTime(String),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
// Absent parameters are None (the Default).
#[serde(default, rename_all = "camelCase")]
pub struct LogOptions {
    pub follow: Option<bool>,
    pub previous: Option<bool>,
    pub timestamps: Option<bool>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    /// The old name of tailLines; "all" means no limit.
    pub tail: Option<String>,
}

impl LogOptions {
    /// Folds the legacy `tail` parameter into `tailLines`, as upstream does.
    pub fn normalize(mut self) -> Result<Self, std::num::ParseIntError> {
        match self.tail.take().as_deref() {
            None | Some("") | Some("all") => {}
            Some(n) => self.tail_lines = Some(n.parse()?),
        }
        Ok(self)
    }

    /// The options for the CRI log reader, with `now` for sinceSeconds.
    pub fn read_options(&self, now: Timestamp) -> kubelet_cri::logs::ReadOptions {
        kubelet_cri::logs::ReadOptions {
            tail: self.tail_lines.map(|n| n.max(0) as u64),
            limit_bytes: self.limit_bytes.map(|n| n.max(0) as u64),
            since: self.since(now),
            timestamps: self.timestamps == Some(true),
        }
    }

    pub fn validate(&self) -> Result<(), LogOptionsError> {
        use LogOptionsError::*;
        if self.tail_lines.is_some_and(|n| n < 0) {
            return Err(NegativeTail);
        }
        if self.limit_bytes.is_some_and(|n| n < 1) {
            return Err(NonPositiveLimit);
        }
        if self.since_seconds.is_some_and(|n| n < 1) {
            return Err(NonPositiveSince);
        }
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err(BothSince);
        }
        if let Some(t) = &self.since_time
            && t.parse::<Timestamp>().is_err()
        {
            return Err(SinceTime(t.clone()));
        }
        Ok(())
    }

    /// The earliest timestamp to show.
    pub fn since(&self, now: Timestamp) -> Option<Timestamp> {
        if let Some(s) = self.since_seconds {
            return now
                .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .ok();
        }
        self.since_time.as_deref().and_then(|t| t.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert!(
            LogOptions {
                tail_lines: Some(-1),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            LogOptions {
                since_time: Some("yesterday".into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        let legacy = LogOptions {
            tail: Some("3".into()),
            ..Default::default()
        };
        assert_eq!(legacy.normalize().ok().map(|o| o.tail_lines), Some(Some(3)));
        let all = LogOptions {
            tail: Some("all".into()),
            tail_lines: None,
            ..Default::default()
        };
        assert_eq!(all.normalize().ok().map(|o| o.tail_lines), Some(None));
        let bad = LogOptions {
            tail: Some("x".into()),
            ..Default::default()
        };
        assert!(bad.normalize().is_err());
        let now: Timestamp = "2026-11-24T10:00:10Z".parse().unwrap_or_default();
        let o = LogOptions {
            since_seconds: Some(8),
            timestamps: Some(true),
            tail_lines: Some(2),
            ..Default::default()
        }
        .read_options(now);
        assert_eq!(o.since, "2026-11-24T10:00:02Z".parse().ok());
        assert_eq!((o.tail, o.timestamps), (Some(2), true));
    }

    #[test]
    fn refused_options_say_why_in_upstreams_words() {
        let why = |o: LogOptions| o.validate().unwrap_err().to_string();
        assert_eq!(
            why(LogOptions {
                tail_lines: Some(-1),
                ..Default::default()
            }),
            "tailLines must be greater than or equal to 0"
        );
        assert_eq!(
            why(LogOptions {
                limit_bytes: Some(0),
                ..Default::default()
            }),
            "limitBytes must be greater than 0"
        );
        assert_eq!(
            why(LogOptions {
                since_seconds: Some(0),
                ..Default::default()
            }),
            "sinceSeconds must be greater than 0"
        );
        assert_eq!(
            why(LogOptions {
                since_seconds: Some(5),
                since_time: Some("2026-01-01T00:00:00Z".into()),
                ..Default::default()
            }),
            "at most one of sinceTime or sinceSeconds may be specified"
        );
        assert!(
            LogOptions {
                since_time: Some("2026-01-01T00:00:00Z".into()),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }
}
