//! Running the external tools the harness drives (docker-registry, skopeo,
//! gpg, tar, gzip), with panics that name what is missing or what failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Debian package that provides each tool the harness runs, for the
/// "install it" hint in a missing-tool panic.
const PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("gpg", "gnupg"),
    ("gpgconf", "gpgconf"),
    ("tar", "tar"),
    ("gzip", "gzip"),
];

/// The full path of `tool` on `PATH`, or a panic naming the tool and the
/// Debian package to install.
pub fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => path,
        None => {
            let package = PACKAGES
                .iter()
                .find(|(name, _)| *name == tool)
                .map_or(tool, |(_, package)| package);
            panic!(
                "test harness: required tool `{tool}` was not found on PATH; install it \
                 (`apt-get install -y {package}`) or run scripts/test.sh, which installs \
                 everything the tests need"
            )
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A command line for `tool`, after checking that the tool exists.
pub fn command(tool: &str) -> Command {
    let mut cmd = Command::new(require(tool));
    cmd.stdin(Stdio::null());
    cmd
}

/// How a command line reads in a panic message.
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion, feeding `input` on stdin, and returns its
/// output whatever the exit status; panics only if it cannot be started.
pub fn run(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("test harness: cannot start `{}`: {e}", describe(cmd)));
    if let Some(input) = input {
        // Write from a thread so a tool that fills its stdout pipe before
        // reading all of stdin cannot deadlock against us.
        let mut stdin = child.stdin.take().expect("stdin was piped");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output();
        let _ = writer.join();
        output
    } else {
        child.wait_with_output()
    }
    .unwrap_or_else(|e| panic!("test harness: waiting for `{}` failed: {e}", describe(cmd)))
}

/// Runs `cmd` and returns its stdout; panics with the command line and its
/// stderr if it exits non-zero.
pub fn run_ok(cmd: &mut Command, input: Option<&[u8]>) -> Vec<u8> {
    let output = run(cmd, input);
    if !output.status.success() {
        panic!(
            "test harness: `{}` failed ({}):\n{}{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
        );
    }
    output.stdout
}

/// Copies a directory tree of regular files (sockets and other special
/// files, such as a gpg-agent socket, are skipped).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Makes `dir` private to its owner, as gpg insists for a GNUPGHOME.
pub fn make_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("test harness: chmod 700 {}: {e}", dir.display()));
}
