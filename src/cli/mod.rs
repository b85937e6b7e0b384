//! The `imagegate` command line, in Skopeo's idiom. Each subcommand is a
//! thin face over the library; exit codes: 0 accepted, 1 rejected, 2 usage
//! or configuration error.

mod commands;
pub mod output;
pub mod policy_io;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit code: every image accepted / the operation succeeded.
pub const EXIT_ACCEPTED: u8 = 0;
/// Exit code: an image or signature was rejected.
pub const EXIT_REJECTED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "imagegate",
    version,
    about = "Image signature policy (containers-policy.json) at Kubernetes admission"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide whether images are allowed by a policy, as CRI-O would at pull time.
    Verify(VerifyArgs),
    /// Verify one signature of a manifest with a public key file (no policy).
    StandaloneVerify(StandaloneVerifyArgs),
    /// Sign a manifest file for a docker reference with a secret key file.
    StandaloneSign(StandaloneSignArgs),
    /// Sign an image in a registry and store the signatures for a lookaside server.
    Sign(SignArgs),
    /// Policy documents: lint, import from and export to a node's files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print the CustomResourceDefinitions (YAML).
    Crd,
    /// Write a CA and a serving certificate for the webhook (local use,
    /// tests; in a cluster the controller or cert-manager manages them).
    Cert(CertArgs),
    /// Run the admission webhook (HTTPS AdmissionReview v1).
    Serve(Box<serve::ServeArgs>),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a containers-policy.json file: strict parse errors with JSON
    /// paths, and warnings for scopes that can never match or requirements
    /// that always deny.
    Lint(LintArgs),
    /// Print a ClusterImagePolicy made from a node's policy.json and
    /// registries.d (key files inlined as keyData).
    Import(policy_io::ImportArgs),
    /// Write policy.json, registries.d and CRI-O per-namespace policies
    /// that enforce what the given documents enforce.
    Export(policy_io::ExportArgs),
}

/// Registry connection flags shared by the commands that talk to registries.
#[derive(Debug, Clone, Args)]
pub struct RegistryFlags {
    /// containers auth file (auth.json / docker config.json) with registry credentials.
    #[arg(long, env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
    /// Require HTTPS and verify certificates (`--tls-verify=false` allows plain
    /// HTTP and self-signed certificates, for loopback registries).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Extra CA certificate (PEM) trusted for registries and lookasides.
    #[arg(long)]
    pub cert: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// containers-policy.json (default: $HOME/.config/containers/policy.json, then /etc/containers/policy.json).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// containers-registries.d directory (default: $HOME/.config/containers/registries.d if it exists, else /etc/containers/registries.d).
    #[arg(long = "registries-d", alias = "registries.d")]
    pub registries_d: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Platform whose manifest-list instance must be verified, OS/ARCH[/VARIANT]; repeatable (default: this machine).
    #[arg(long)]
    pub platform: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: output::OutputFormat,
    /// Images, with or without a `docker://` prefix.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StandaloneVerifyArgs {
    pub manifest: PathBuf,
    pub docker_reference: String,
    /// A public key file (binary or ASCII-armoured); its primary fingerprints are trusted.
    pub public_key_file: PathBuf,
    pub signature: PathBuf,
}

#[derive(Debug, Args)]
pub struct StandaloneSignArgs {
    pub manifest: PathBuf,
    pub docker_reference: String,
    /// A secret key file (binary or ASCII-armoured).
    pub secret_key_file: PathBuf,
    /// Where to write the signature.
    #[arg(short, long)]
    pub output: PathBuf,
    /// File holding the secret key's passphrase.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// A secret key file (binary or ASCII-armoured).
    #[arg(long)]
    pub key: PathBuf,
    /// File holding the secret key's passphrase.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The identity to sign (default: the image reference, as `podman push --sign-by`).
    #[arg(long)]
    pub identity: Option<String>,
    /// Directory laid out as a lookaside store (`<repo>@sha256=<hex>/signature-N`).
    #[arg(long, conflicts_with = "output")]
    pub lookaside_staging: Option<PathBuf>,
    /// containers-registries.d directory, for `lookaside-staging` when no directory is given.
    #[arg(long = "registries-d", alias = "registries.d")]
    pub registries_d: Option<PathBuf>,
    /// Write the one signature to this file (single-manifest images only).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// The image to sign, with or without `docker://`.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// Directory to write `ca.crt`, `tls.crt` and `tls.key` into.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// DNS names or IP addresses the serving certificate is valid for.
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
    /// Validity of both certificates.
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    pub validity: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// A containers-policy.json file.
    pub file: PathBuf,
    /// Accept a document without `default` (as Kubernetes policy documents may be).
    #[arg(long)]
    pub allow_missing_default: bool,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Crd => {
            print!("{}", crate::crd::crd_yaml());
            Ok(EXIT_ACCEPTED)
        }
        Command::Verify(a) => commands::verify(a).await,
        Command::StandaloneVerify(a) => commands::standalone_verify(a),
        Command::StandaloneSign(a) => commands::standalone_sign(a),
        Command::Sign(a) => commands::sign(a).await,
        Command::Policy(PolicyCommand::Lint(a)) => commands::lint(a),
        Command::Policy(PolicyCommand::Import(a)) => policy_io::import(a),
        Command::Policy(PolicyCommand::Export(a)) => policy_io::export(a).await,
        Command::Serve(a) => serve::serve(*a).await,
        Command::Cert(a) => commands::cert(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
