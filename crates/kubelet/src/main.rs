//! The kubelet binary: parse flags, set up logging, run until SIGTERM/SIGINT.

use clap::Parser;
use kubelet_agent::kubelet;
use kubelet_agent::options::Flags;
use tokio_util::sync::CancellationToken;

fn init_logging(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=1 => "info",
        2..=4 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBELET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,kubelet={level},kubelet_agent={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    init_logging(flags.verbosity);
    let settings = kubelet::settings(flags)?;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop.cancel();
    });
    kubelet::run(settings, cancel).await?;
    Ok(())
}
