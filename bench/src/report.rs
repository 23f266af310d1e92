//! Merges a run directory into one results document and a Markdown table.
//!
//! Layout (written by scripts/bench.sh):
//!   DIR/run.json, DIR/machine.json
//!   DIR/CONFIG/KUBELET/{info,floor-N,footprint-idle,lifecycle-N,crash,probes}.json
//! with CONFIG e.g. `defaults`, `qps50` and KUBELET `upstream` or `ours`.

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

const KUBELETS: [&str; 2] = ["upstream", "ours"];

fn read_json(p: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&s).with_context(|| format!("parsing {}", p.display()))
}

fn read_dir_json(dir: &Path) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        // A workload that failed leaves an empty or partial file: keep going, note it.
        match read_json(&p) {
            Ok(v) => m.insert(stem.to_string(), v),
            Err(e) => m.insert(stem.to_string(), json!({"error": format!("{e:#}")})),
        };
    }
    Ok(m)
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for k in path {
        cur = cur.get(k)?;
    }
    cur.as_f64()
}

/// The run's sizes: every N with a lifecycle-N or floor-N file.
fn sizes(runs: &Map<String, Value>, prefix: &str) -> Vec<u64> {
    let mut s = BTreeSet::new();
    for cfg in runs.values() {
        for k in KUBELETS {
            if let Some(files) = cfg.get(k).and_then(Value::as_object) {
                for name in files.keys() {
                    if let Some(n) = name.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
                        s.insert(n);
                    }
                }
            }
        }
    }
    s.into_iter().collect()
}

type Extract = Box<dyn Fn(&Value) -> Option<f64>>;

fn figures(lifecycle: &[u64], floors: &[u64]) -> Vec<(String, Extract)> {
    let mut f: Vec<(String, Extract)> = vec![];
    let at = |file: String, path: &'static [&'static str]| -> Extract {
        Box::new(move |v: &Value| num(v.get(&file)?, path))
    };
    for &n in lifecycle {
        let file = format!("lifecycle-{n}");
        if n == 1 {
            f.push(("startup, 1 pod (s)".into(), at(file, &["startup", "max"])));
            continue;
        }
        for p in ["p50", "p90", "p99", "max"] {
            let path: &'static [&'static str] = match p {
                "p50" => &["startup", "p50"],
                "p90" => &["startup", "p90"],
                "p99" => &["startup", "p99"],
                _ => &["startup", "max"],
            };
            f.push((
                format!("startup, {n} pods, {p} (s)"),
                at(file.clone(), path),
            ));
        }
        f.push((
            format!("startup, {n} pods, all Running (s)"),
            at(file.clone(), &["all_running_s"]),
        ));
    }
    for &n in lifecycle {
        let file = format!("lifecycle-{n}");
        if n == 1 {
            f.push(("delete, 1 pod (s)".into(), at(file, &["delete", "max"])));
            continue;
        }
        f.push((
            format!("delete, {n} pods, p50 (s)"),
            at(file.clone(), &["delete", "p50"]),
        ));
        f.push((
            format!("delete, {n} pods, p99 (s)"),
            at(file.clone(), &["delete", "p99"]),
        ));
        f.push((
            format!("delete, {n} pods, all gone (s)"),
            at(file, &["all_gone_s"]),
        ));
    }
    f.push((
        "crash-to-status p50 (s)".into(),
        at("crash".into(), &["crash_to_status", "p50"]),
    ));
    f.push((
        "crash-to-status p99 (s)".into(),
        at("crash".into(), &["crash_to_status", "p99"]),
    ));
    f.push((
        "RSS idle, 0 pods (MB)".into(),
        at("footprint-idle".into(), &["rss_mean_mb"]),
    ));
    f.push((
        "CPU idle, 0 pods (% of a core)".into(),
        at("footprint-idle".into(), &["cpu_pct_core"]),
    ));
    for &n in lifecycle.iter().filter(|n| **n >= 30) {
        let file = format!("lifecycle-{n}");
        f.push((
            format!("RSS with {n} pods (MB)"),
            at(file.clone(), &["footprint", "rss_mean_mb"]),
        ));
        f.push((
            format!("CPU with {n} pods (% of a core)"),
            at(file, &["footprint", "cpu_pct_core"]),
        ));
    }
    f.push((
        "probed pods, one HTTP probe each per second (count)".into(),
        at("probes".into(), &["pods"]),
    ));
    for (label, path) in [
        (
            "probe lateness p50 (s)",
            &["lateness", "p50"] as &'static [&'static str],
        ),
        ("probe lateness p99 (s)", &["lateness", "p99"]),
        ("probe lateness max (s)", &["lateness", "max"]),
        (
            "CPU with probed pods (% of a core)",
            &["footprint", "cpu_pct_core"],
        ),
        ("RSS with probed pods (MB)", &["footprint", "rss_mean_mb"]),
    ] {
        f.push((label.into(), at("probes".into(), path)));
    }
    f.push((
        "probes delivered (% of expected)".into(),
        Box::new(|v: &Value| {
            let p = v.get("probes")?;
            let want = num(p, &["probes_expected"])?;
            let got = num(p, &["probes"])?;
            (want > 0.0).then(|| 100.0 * got / want)
        }),
    ));
    let peak_files: Vec<String> = ["footprint-idle".to_string(), "probes".to_string()]
        .into_iter()
        .chain(lifecycle.iter().map(|n| format!("lifecycle-{n}")))
        .collect();
    f.push((
        "peak RSS, VmHWM (MB)".into(),
        Box::new(move |v: &Value| {
            peak_files
                .iter()
                .filter_map(|file| {
                    let x = v.get(file)?;
                    num(x, &["hwm_mb"]).or_else(|| num(x, &["footprint", "hwm_mb"]))
                })
                .reduce(f64::max)
        }),
    ));
    f.push((
        "API requests, background (per minute, 0 pods)".into(),
        Box::new(|v: &Value| {
            let fp = v.get("footprint-idle")?;
            Some(num(fp, &["api", "requests"])? * 60.0 / num(fp, &["api", "window_s"])?)
        }),
    ));
    for &n in lifecycle {
        let file = format!("lifecycle-{n}");
        let file2 = file.clone();
        f.push((
            format!("API requests per pod, {n}-pod lifecycle, raw"),
            Box::new(move |v: &Value| Some(num(v.get(&file)?, &["api", "requests"])? / n as f64)),
        ));
        f.push((
            format!("API requests per pod, {n}-pod lifecycle, net of background"),
            Box::new(move |v: &Value| {
                let l = v.get(&file2)?;
                let fp = v.get("footprint-idle")?;
                let rate = num(fp, &["api", "requests"])? / num(fp, &["api", "window_s"])?;
                let raw = num(l, &["api", "requests"])?;
                let win = num(l, &["api", "window_s"])?;
                Some((raw - rate * win).max(0.0) / n as f64)
            }),
        ));
    }
    for &n in floors {
        let file = format!("floor-{n}");
        if n == 1 {
            f.push((
                "runtime floor (CRI), 1 pod (s)".into(),
                at(file, &["startup", "max"]),
            ));
            continue;
        }
        f.push((
            format!("runtime floor (CRI), {n} pods, p50 (s)"),
            at(file.clone(), &["startup", "p50"]),
        ));
        f.push((
            format!("runtime floor (CRI), {n} pods, p99 (s)"),
            at(file, &["startup", "p99"]),
        ));
    }
    for &n in floors.iter().filter(|n| lifecycle.contains(n)) {
        let l = format!("lifecycle-{n}");
        let fl = format!("floor-{n}");
        let (label, key) = if n == 1 {
            ("startup, 1 pod ÷ floor".to_string(), "max")
        } else {
            (format!("startup, {n} pods, p99 ÷ floor p99"), "p99")
        };
        f.push((
            label,
            Box::new(move |v: &Value| {
                let a = num(v.get(&l)?, &["startup", key])?;
                let b = num(v.get(&fl)?, &["startup", key])?;
                (b > 0.0).then(|| a / b)
            }),
        ));
    }
    f
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// Returns the results document and the Markdown table.
pub fn build(dir: &Path, plot_data: bool) -> Result<(Value, String)> {
    let run = read_json(&dir.join("run.json")).unwrap_or(Value::Null);
    let machine = read_json(&dir.join("machine.json")).unwrap_or(Value::Null);
    let mut runs = Map::new();
    let mut cfgs: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && e.file_name() != "plot")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // defaults first, then the rest by name
    cfgs.sort_by_key(|c| (c != "defaults", c.clone()));
    for cfg in &cfgs {
        let mut per = Map::new();
        for k in KUBELETS {
            let d = dir.join(cfg).join(k);
            if d.is_dir() {
                per.insert(k.to_string(), Value::Object(read_dir_json(&d)?));
            }
        }
        runs.insert(cfg.clone(), Value::Object(per));
    }
    let lifecycle = sizes(&runs, "lifecycle-");
    let floors = sizes(&runs, "floor-");
    let figs = figures(&lifecycle, &floors);

    let mut table = vec![];
    let mut md = String::new();
    let _ = writeln!(md, "### kubelet-rs vs upstream kubelet 1.20.2");
    if let Some(m) = machine.as_object() {
        let g = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        let _ = writeln!(
            md,
            "\n{} · {} CPUs ({}) · {} RAM · kernel {} · containerd {} · mode {}",
            g("date"),
            m.get("nproc").map(|v| v.to_string()).unwrap_or_default(),
            g("cpu"),
            g("memory"),
            g("kernel"),
            g("containerd"),
            run.get("mode").and_then(Value::as_str).unwrap_or("?"),
        );
    }
    for (cfg, per) in &runs {
        let _ = writeln!(md, "\n#### {cfg}\n");
        let _ = writeln!(md, "| figure | upstream | ours | ours/upstream |");
        let _ = writeln!(md, "|---|---:|---:|---:|");
        let up = per.get("upstream").cloned().unwrap_or(Value::Null);
        let ours = per.get("ours").cloned().unwrap_or(Value::Null);
        for (label, f) in &figs {
            let (a, b) = (f(&up), f(&ours));
            if a.is_none() && b.is_none() {
                continue;
            }
            let ratio = match (a, b) {
                (Some(a), Some(b)) if a != 0.0 => Some(b / a),
                _ => None,
            };
            let _ = writeln!(md, "| {label} | {} | {} | {} |", fmt(a), fmt(b), fmt(ratio));
            table.push(json!({
                "config": cfg, "figure": label,
                "upstream": a.map(crate::stats::r4), "ours": b.map(crate::stats::r4),
                "ratio": ratio.map(crate::stats::r4),
            }));
        }
    }
    let _ = writeln!(
        md,
        "\nLatencies from the client's call to the watch event; startup = Running with all \
         containers ready; delete grace 1 s; footprint = mean VmRSS and CPU over 30 s; API \
         requests of user system:node:<node> from the apiserver audit log. The runtime floor is \
         measured right before each kubelet's run, with no kubelet running."
    );
    if plot_data {
        write_plot_data(dir, &runs)?;
    }
    let results = json!({
        "schema": 1,
        "run": run,
        "machine": machine,
        "results": runs,
        "table": table,
    });
    Ok((results, md))
}

/// DIR/plot/CONFIG-N-KUBELET.dat and CONFIG-N-floor.dat (floor from the upstream run): sorted
/// startup latencies with their cumulative fraction, for a CDF plot.
fn write_plot_data(dir: &Path, runs: &Map<String, Value>) -> Result<()> {
    let out = dir.join("plot");
    std::fs::create_dir_all(&out)?;
    for (cfg, per) in runs {
        for k in KUBELETS {
            let Some(files) = per.get(k).and_then(Value::as_object) else {
                continue;
            };
            for (name, v) in files {
                let (label, samples) = if let Some(n) = name.strip_prefix("lifecycle-") {
                    (format!("{cfg}-{n}-{k}"), v.get("startup_samples"))
                } else if let Some(n) = name.strip_prefix("floor-") {
                    if k != "upstream" {
                        continue;
                    }
                    (format!("{cfg}-{n}-floor"), v.get("samples"))
                } else {
                    continue;
                };
                let mut s: Vec<f64> = samples
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                if s.is_empty() {
                    continue;
                }
                s.sort_by(f64::total_cmp);
                let mut text = String::new();
                for (i, x) in s.iter().enumerate() {
                    let _ = writeln!(text, "{x} {}", (i + 1) as f64 / s.len() as f64);
                }
                std::fs::write(out.join(format!("{label}.dat")), text)?;
            }
        }
    }
    Ok(())
}
