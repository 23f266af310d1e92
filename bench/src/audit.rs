//! Requests a user made, counted from the apiserver's audit log (one JSON event per line,
//! level Metadata; a request has one event per stage, so requests are counted by auditID).

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::time::SystemTime;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    #[serde(default)]
    verb: String,
    user: User,
    request_received_timestamp: String,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    username: String,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
}

#[derive(Debug, Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: i64,
}

/// Requests by `user` received in `[from, to]`, with a breakdown by verb and resource, and
/// how many got an error status (>= 400).
pub fn count(path: &str, user: &str, from: SystemTime, to: SystemTime) -> Result<Value> {
    let from = jiff::Timestamp::try_from(from).context("time")?;
    let to = jiff::Timestamp::try_from(to).context("time")?;
    let f = std::fs::File::open(path).with_context(|| format!("opening audit log {path}"))?;
    let needle = format!("\"username\":\"{user}\"");
    let mut seen = HashSet::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.context("reading audit log")?;
        if !line.contains(&needle) {
            continue;
        }
        let Ok(ev) = serde_json::from_str::<Event>(&line) else {
            continue;
        };
        if ev.user.username != user {
            continue;
        }
        let Ok(t) = ev.request_received_timestamp.parse::<jiff::Timestamp>() else {
            continue;
        };
        if t < from || t > to {
            continue;
        }
        let key = match &ev.object_ref {
            Some(o) if !o.subresource.is_empty() => {
                format!("{} {}/{}", ev.verb, o.resource, o.subresource)
            }
            Some(o) => format!("{} {}", ev.verb, o.resource),
            None => ev.verb.clone(),
        };
        let code = ev.response_status.as_ref().map_or(0, |s| s.code);
        if code >= 400 {
            // Counted on the stage that carries the status; a request's later stage adds nothing.
            *errors.entry(format!("{key} {code}")).or_default() += 1;
        }
        if seen.insert(ev.audit_id) {
            total += 1;
            *kinds.entry(key).or_default() += 1;
        }
    }
    Ok(json!({
        "user": user,
        "from": from.to_string(),
        "to": to.to_string(),
        "window_s": crate::stats::r4(to.duration_since(from).as_secs_f64()),
        "requests": total,
        "by_kind": kinds,
        "errors": errors,
    }))
}
