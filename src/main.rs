//! The `imagegate` binary: parses the command line and hands it to the library.

use clap::Parser;
use imagegate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS provider for every client and server in the process (ring).
    imagegate::ensure_crypto_provider();
    let cli = Cli::parse();
    // The webhook logs JSON lines (one per decision) at info; the other
    // commands print their results and log only warnings, as text.
    let serving = matches!(cli.command, Command::Serve(_));
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGEGATE_LOG")
        .unwrap_or_else(|_| if serving { "info" } else { "warn" }.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // The server writes a line per decision: a background thread writes
    // them, a batch per system call, so reviews never wait on stderr. Not
    // lossy: when it falls behind, callers wait rather than lines vanish.
    // The guard flushes what is left when main returns.
    let _log_writer_guard = if serving {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("imagegate-log")
            .finish(std::io::BufWriter::new(std::io::stderr()));
        builder
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .init();
        Some(guard)
    } else {
        builder.with_writer(std::io::stderr).init();
        None
    };
    imagegate::cli::run(cli).await
}
