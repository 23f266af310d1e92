//! Latency summaries: nearest-rank percentiles over seconds.

use serde_json::{Value, json};

/// Rounds to a tenth of a millisecond, so the JSON stays readable.
pub fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The nearest-rank percentile `p` (0..=100) of sorted samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `{n, min, mean, p50, p90, p99, max}` in seconds; `null` figures when there are no samples.
pub fn summary(samples: &[f64]) -> Value {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    let mean = (!s.is_empty()).then(|| r4(s.iter().sum::<f64>() / s.len() as f64));
    let pct = |p| percentile(&s, p).map(r4);
    json!({
        "n": s.len(),
        "min": s.first().copied().map(r4),
        "mean": mean,
        "p50": pct(50.0),
        "p90": pct(90.0),
        "p99": pct(99.0),
        "max": s.last().copied().map(r4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = summary(&[0.3, 0.1, 0.2]);
        assert_eq!(s["p50"], json!(0.2));
        assert_eq!(s["max"], json!(0.3));
    }
}
