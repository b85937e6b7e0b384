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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if serving {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    imagegate::cli::run(cli).await
}
