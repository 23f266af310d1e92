//! Go's `time.Duration` text form, as KubeletConfiguration files carry it.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Why a duration did not parse; the message is the one shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Parses Go's `time.Duration` text form ("10s", "1m0s", "1h30m", "250ms").
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = DurationError;
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad(format!("invalid duration {s:?}")));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad(format!("missing unit in duration {s:?}")))?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| bad(format!("invalid duration {s:?}")))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(bad(format!("unknown unit {unit:?} in duration {s:?}"))),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    // Go's durations are int64 nanoseconds: about 292 years at most.
    if !total.is_finite() || total * 1e9 > i64::MAX as f64 {
        return Err(bad(format!("invalid duration {s:?}: out of range")));
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad(format!("invalid duration {s:?}")))
}

/// Go's `time.Duration.String()`: "0s", "250ms", "10s", "1m0s", "1h30m0s", "1.5s".
pub fn format_go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim(ns / 1_000, ns % 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim(ns / 1_000_000, ns % 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s = format!("{}s", trim(s, ns % 1_000_000_000, 9));
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_go_duration(*d))
}

pub(crate) fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_go_duration(*d)),
        None => s.serialize_none(),
    }
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_go_duration(&s).map_err(serde::de::Error::custom)
}

pub(crate) fn de_opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}
