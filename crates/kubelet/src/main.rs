//! The kubelet binary: parse flags, set up logging, run until SIGTERM/SIGINT.

use ::kubelet::{kubelet, options::Flags};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The log targets `-v` sets the level of (the kubelet's own decisions and actions); every
/// other target logs warnings.
const OUR_CRATES: &[&str] = &["kubelet", "kubelet_pod", "kubelet_api"];

fn init_logging(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=1 => "info",
        2..=4 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KUBELET_LOG").unwrap_or_else(|_| {
        let ours = OUR_CRATES
            .iter()
            .map(|c| format!(",{c}={level}"))
            .collect::<String>();
        tracing_subscriber::EnvFilter::new(format!("warn{ours}"))
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> std::process::ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(1);
        }
    };
    init_logging(flags.verbosity);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(flags)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line naming what is wrong; no backtrace for bad input.
            eprintln!("kubelet: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let settings = kubelet::settings(flags)?;
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
