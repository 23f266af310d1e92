//! Footprint of a process from /proc: resident memory and CPU time over a window.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::stats::r4;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

pub fn sample(pid: u32) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the kubelet running?)"))?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces and parentheses): state is field 3,
    // utime field 14, stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc/PID/stat")
    };
    if f.first() == Some(&"Z") {
        bail!("process {pid} is a zombie");
    }
    Ok(Sample {
        rss_kb: field("VmRSS:").context("no VmRSS")?,
        hwm_kb: field("VmHWM:").context("no VmHWM")?,
        threads: field("Threads:").unwrap_or(0),
        cpu_ticks: num(11)? + num(12)?,
    })
}

/// USER_HZ; 100 on every Linux this runs on, but ask.
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Samples the process every second for `window`; RSS as mean and max over the samples, CPU
/// seconds as the difference over the window.
pub async fn measure(pid: u32, window: Duration) -> Result<Value> {
    let hz = clock_ticks();
    let start = Instant::now();
    let first = sample(pid)?;
    let mut samples = vec![first];
    let mut next = start;
    loop {
        next += Duration::from_secs(1);
        if next > start + window {
            break;
        }
        tokio::time::sleep_until(next).await;
        samples.push(sample(pid)?);
    }
    tokio::time::sleep_until(start + window).await;
    let last = sample(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    samples.push(last);
    let mb = |kb: u64| r4(kb as f64 / 1024.0);
    let rss_mean = samples.iter().map(|s| s.rss_kb as f64).sum::<f64>() / samples.len() as f64;
    let rss_max = samples.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let cpu_s = (last.cpu_ticks.saturating_sub(first.cpu_ticks)) as f64 / hz;
    Ok(json!({
        "pid": pid,
        "window_s": r4(elapsed),
        "rss_mb": mb(last.rss_kb),
        "rss_mean_mb": r4(rss_mean / 1024.0),
        "rss_max_mb": mb(rss_max),
        "hwm_mb": mb(last.hwm_kb),
        "threads": last.threads,
        "cpu_s": r4(cpu_s),
        "cpu_pct_core": r4(100.0 * cpu_s / elapsed),
        "cpu_total_s": r4(last.cpu_ticks as f64 / hz),
    }))
}
