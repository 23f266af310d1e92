//! `kubelet-bench`: the workloads of the side-by-side benchmark (issue 8), one subcommand each,
//! JSON on stdout. `scripts/bench.sh` drives them against the upstream kubelet and ours and
//! calls `report` to merge the pieces into one results file and a Markdown table.

// A command-line tool: its output is stdout.
#![allow(clippy::print_stdout)]

mod audit;
mod floor;
mod footprint;
mod probes;
mod report;
mod stats;
mod workloads;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The wall clock: the bench times whole processes against audit-log timestamps.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_now() -> SystemTime {
    SystemTime::now()
}

const CLUSTER: &str = "/var/lib/kubelet-rs/cluster";

#[derive(Debug, Parser)]
#[command(
    name = "kubelet-bench",
    about = "Workloads of the kubelet side-by-side benchmark"
)]
struct Cli {
    /// Admin kubeconfig of the cluster.
    #[arg(long, global = true, default_value_t = format!("{CLUSTER}/admin.kubeconfig"))]
    kubeconfig: String,
    /// The node the kubelet under test registered.
    #[arg(long, global = true, default_value = "krs-node")]
    node: String,
    /// CRI endpoint of the runtime.
    #[arg(
        long,
        global = true,
        default_value = "unix:///run/kubelet-rs/containerd/containerd.sock"
    )]
    cri: String,
    /// Also write the JSON to this file.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// A burst of N pods: startup latency, [footprint with them running], delete latency, and
    /// the node user's requests over the whole lifecycle from the audit log.
    Lifecycle {
        #[arg(long)]
        pods: usize,
        /// Deadline for all to run, and again for all to be gone.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Kubelet pid: measure its footprint with the pods running.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 10)]
        settle: u64,
        #[arg(long, default_value_t = 30)]
        window: u64,
        /// The apiserver's audit log (empty: do not count requests).
        #[arg(long, default_value_t = format!("{CLUSTER}/logs/audit.log"))]
        audit_log: String,
        /// Seconds after the last pod is gone still counted in the audit window.
        #[arg(long, default_value_t = 3)]
        tail: u64,
    },
    /// Crash-to-status: pods whose container exits 1 after a while (restartPolicy Never).
    Crash {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Seconds until the container exits.
        #[arg(long, default_value_t = 2.0)]
        after: f64,
        #[arg(long, default_value_t = 180)]
        timeout: u64,
    },
    /// Probe punctuality: N pods with an HTTP readiness probe each, aimed at this process;
    /// the lateness of the probes and the kubelet's footprint over a window.
    Probes {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long, default_value_t = 1)]
        period: u64,
        /// Deadline for all to be ready, and again for all to be gone.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Kubelet pid: measure its footprint over the window.
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 10)]
        settle: u64,
        #[arg(long, default_value_t = 30)]
        window: u64,
    },
    /// Footprint of a process over a window (the idle kubelet), and the node user's requests
    /// in that window (the background: lease, node status).
    Footprint {
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 30)]
        window: u64,
        #[arg(long, default_value_t = format!("{CLUSTER}/logs/audit.log"))]
        audit_log: String,
    },
    /// The runtime floor: the burst straight through CRI. Run it with no kubelet running.
    Floor {
        #[arg(long)]
        pods: usize,
        /// Pods run and removed first, not counted.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        #[arg(long, default_value = workloads::IMAGE)]
        image: String,
    },
    /// Removes sandboxes left by an interrupted `floor`.
    FloorClean,
    /// Merges a run directory (CONFIG/KUBELET/*.json, machine.json) into one results file and
    /// prints the Markdown table.
    Report {
        /// The run directory written by scripts/bench.sh.
        dir: PathBuf,
        /// Also write the Markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write sorted latency samples for plotting (DIR/plot/*.dat).
        #[arg(long)]
        plot_data: bool,
    },
}

async fn client(path: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {path}"))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("kubeconfig")?;
    Ok(kube::Client::try_from(cfg)?)
}

fn audit(path: &str, node: &str) -> Option<workloads::Audit> {
    (!path.is_empty()).then(|| workloads::Audit {
        path: path.to_string(),
        user: format!("system:node:{node}"),
    })
}

async fn run(cli: &Cli) -> Result<Value> {
    let secs = Duration::from_secs;
    Ok(match &cli.cmd {
        Cmd::Lifecycle {
            pods,
            timeout,
            pid,
            settle,
            window,
            audit_log,
            tail,
        } => {
            let c = client(&cli.kubeconfig).await?;
            let o = workloads::LifecycleOpts {
                pods: *pods,
                timeout: secs(*timeout),
                footprint: pid.map(|p| (p, secs(*settle), secs(*window))),
                audit: audit(audit_log, &cli.node),
                tail: secs(*tail),
            };
            workloads::lifecycle(&c, &cli.node, &o).await?
        }
        Cmd::Crash {
            runs,
            after,
            timeout,
        } => {
            let c = client(&cli.kubeconfig).await?;
            workloads::crash(
                &c,
                &cli.node,
                &cli.cri,
                *runs,
                Duration::from_secs_f64(*after),
                secs(*timeout),
            )
            .await?
        }
        Cmd::Probes {
            pods,
            period,
            timeout,
            pid,
            settle,
            window,
        } => {
            let c = client(&cli.kubeconfig).await?;
            let o = probes::ProbeOpts {
                pods: *pods,
                period: (*period).max(1),
                timeout: secs(*timeout),
                pid: *pid,
                settle: secs(*settle),
                window: secs(*window),
            };
            probes::run(&c, &cli.node, &o).await?
        }
        Cmd::Footprint {
            pid,
            window,
            audit_log,
        } => {
            let w0 = wall_now();
            let mut f = footprint::measure(*pid, secs(*window)).await?;
            if let Some(a) = audit(audit_log, &cli.node) {
                f["api"] = audit::count(&a.path, &a.user, w0, wall_now())?;
            }
            f
        }
        Cmd::Floor {
            pods,
            warmup,
            image,
        } => floor::run(&cli.cri, *pods, *warmup, image).await?,
        Cmd::FloorClean => serde_json::json!({"removed": floor::clean(&cli.cri).await?}),
        Cmd::Report {
            dir,
            markdown,
            plot_data,
        } => {
            let (results, md) = report::build(dir, *plot_data)?;
            println!("{md}");
            if let Some(p) = markdown {
                std::fs::write(p, &md).with_context(|| format!("writing {}", p.display()))?;
            }
            results
        }
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let v = run(&cli).await?;
    let text = serde_json::to_string_pretty(&v)?;
    if let Some(p) = &cli.out {
        std::fs::write(p, format!("{text}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if !matches!(cli.cmd, Cmd::Report { .. }) {
        println!("{text}");
    }
    Ok(())
}
