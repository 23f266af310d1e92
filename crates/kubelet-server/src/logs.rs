//! Container logs in the CRI format (`<RFC3339Nano> <stdout|stderr> <P|F> <content>`), with
//! the options of `kubectl logs`: tailLines, limitBytes, sinceSeconds, sinceTime, timestamps.

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(default)]
    pub follow: Option<bool>,
    #[serde(default)]
    pub previous: Option<bool>,
    #[serde(default)]
    pub timestamps: Option<bool>,
    #[serde(default)]
    pub tail_lines: Option<i64>,
    #[serde(default)]
    pub limit_bytes: Option<i64>,
    #[serde(default)]
    pub since_seconds: Option<i64>,
    #[serde(default)]
    pub since_time: Option<String>,
}

impl LogOptions {
    pub fn validate(&self) -> Result<(), String> {
        if self.tail_lines.is_some_and(|n| n < 0) {
            return Err("tailLines must be greater than or equal to 0".into());
        }
        if self.limit_bytes.is_some_and(|n| n < 1) {
            return Err("limitBytes must be greater than 0".into());
        }
        if self.since_seconds.is_some_and(|n| n < 1) {
            return Err("sinceSeconds must be greater than 0".into());
        }
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        if let Some(t) = &self.since_time
            && t.parse::<Timestamp>().is_err()
        {
            return Err(format!("invalid sinceTime {t:?}"));
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub content: String,
}

/// Parses CRI log text into entries, joining partial (`P`) lines with what follows.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = vec![];
    let mut partial = String::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break; // still being written
        }
        let line = &line[..line.len() - 1];
        let mut f = line.splitn(4, ' ');
        let (Some(time), Some(_stream), Some(tag), content) =
            (f.next(), f.next(), f.next(), f.next().unwrap_or(""))
        else {
            continue;
        };
        partial.push_str(content);
        if tag == "P" {
            continue;
        }
        out.push(Entry {
            time: time.to_string(),
            content: std::mem::take(&mut partial),
        });
    }
    out
}

/// Renders entries with the options applied, as upstream's `ReadLogs`.
pub fn render(entries: &[Entry], opts: &LogOptions, now: Timestamp) -> Vec<u8> {
    let since = opts.since(now);
    let mut selected: Vec<&Entry> = entries
        .iter()
        .filter(|e| since.is_none_or(|s| e.time.parse::<Timestamp>().is_ok_and(|t| t >= s)))
        .collect();
    if let Some(n) = opts.tail_lines {
        let n = n.max(0) as usize;
        if selected.len() > n {
            selected.drain(..selected.len() - n);
        }
    }
    let mut out = Vec::new();
    for e in selected {
        if opts.timestamps == Some(true) {
            out.extend_from_slice(e.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.content.as_bytes());
        out.push(b'\n');
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit.max(0) as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-24T10:00:00.000000001Z stdout F one\n\
                       2026-11-24T10:00:01.000000000Z stderr P tw\n\
                       2026-11-24T10:00:01.500000000Z stderr F o\n\
                       2026-11-24T10:00:02.000000000Z stdout F three\n\
                       2026-11-24T10:00:03.000000000Z stdout F par";

    #[test]
    fn options() {
        let e = parse(LOG);
        assert_eq!(
            e.iter().map(|e| e.content.as_str()).collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        let now: Timestamp = "2026-11-24T10:00:10Z".parse().unwrap();
        assert_eq!(
            render(&e, &LogOptions::default(), now),
            b"one\ntwo\nthree\n"
        );
        let tail = LogOptions {
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(render(&e, &tail, now), b"three\n");
        let ts = LogOptions {
            timestamps: Some(true),
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(
            render(&e, &ts, now),
            b"2026-11-24T10:00:02.000000000Z three\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..Default::default()
        };
        assert_eq!(render(&e, &limit, now), b"one\nt");
        let since = LogOptions {
            since_seconds: Some(8),
            ..Default::default()
        };
        assert_eq!(render(&e, &since, now), b"three\n");
        let since_t = LogOptions {
            since_time: Some("2026-11-24T10:00:01.200000000Z".into()),
            ..Default::default()
        };
        assert_eq!(render(&e, &since_t, now), b"two\nthree\n");
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
    }
}
