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
    let _log = imagegate::logging::init(matches!(cli.command, Command::Serve(_)));
    imagegate::cli::run(cli).await
}
