//! The kubelet binary: parse flags, set up logging, run until SIGTERM/SIGINT.

use ::kubelet::{
    kubelet,
    options::{self, FlagsError, Parsed},
};
use std::io::Write;
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
    let parsed = match options::parse(std::env::args_os().skip(1)) {
        Ok(p) => p,
        Err(e) if e.is_info() => {
            // --help, --version: on stdout, as upstream.
            let _ = writeln!(std::io::stdout(), "{e}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(e @ FlagsError::Syntax(_)) => {
            // clap's message, with its own "error:" and a pointer to --help.
            let _ = writeln!(std::io::stderr(), "{e}");
            return std::process::ExitCode::from(1);
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kubelet: error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    init_logging(parsed.flags.verbosity);
    for w in &parsed.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(parsed)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line naming what is wrong; no backtrace for bad input.
            eprintln!("kubelet: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(parsed: Parsed) -> anyhow::Result<()> {
    let settings = kubelet::settings(parsed)?;
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
