//! The kubelet binary: parse flags, set up logging, run until SIGTERM/SIGINT.

use ::kubelet::{
    kubelet, logging,
    options::{self, FlagsError},
};
use std::io::Write;
use tokio_util::sync::CancellationToken;

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
    // The config file says the log format: read it first, log its warnings after.
    let settings = match kubelet::settings(parsed) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kubelet: error: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    logging::init(logging::Options {
        verbosity: settings.flags.verbosity,
        vmodule: logging::parse_vmodule(&settings.flags.vmodule),
        format: if settings.config.logging.format == "json" {
            logging::Format::Json
        } else {
            logging::Format::Text
        },
    });
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(settings)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line naming what is wrong; no backtrace for bad input.
            eprintln!("kubelet: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(settings: kubelet::Settings) -> anyhow::Result<()> {
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
