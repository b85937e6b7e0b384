//! The `imagegate` binary: parses the command line and hands it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS provider for every client and server in the process (ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMAGEGATE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    imagegate::cli::run(imagegate::cli::Cli::parse()).await
}
