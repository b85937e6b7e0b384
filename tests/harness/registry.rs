//! A Debian `docker-registry` (distribution 2.8) on 127.0.0.1: plain HTTP,
//! storage in the harness directory, killed on drop; no auth, or `htpasswd`
//! Basic auth ([`Registry::start_with_htpasswd`]) for the pull-secret tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::tools::command;

/// How long a registry may take to answer `/v2/` before the start fails.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// docker-registry needs its port up front, so a free port is picked and
/// then released; another process may grab it first, hence retries.
const START_ATTEMPTS: usize = 3;

/// A running registry process.
pub struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Whether `/v2/` answers 401 (htpasswd) rather than 200.
    auth: bool,
}

impl Registry {
    /// Starts a registry storing its data under `dir` and waits until
    /// `GET /v2/` answers 200.
    pub fn start(dir: &Path) -> Registry {
        Registry::start_with(dir, None)
    }

    /// Starts a registry that serves the same storage as one started with
    /// [`Registry::start`] on `dir`, but only to `user`/`password` (Basic
    /// auth from an htpasswd file, as a private registry is usually run).
    pub fn start_with_htpasswd(dir: &Path, user: &str, password: &str) -> Registry {
        // distribution accepts only bcrypt entries; the minimum cost keeps
        // the registry's per-request check cheap.
        let hash = bcrypt::hash(password, 4).expect("bcrypt the registry password");
        let htpasswd = dir.join(format!("htpasswd-{user}"));
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
        Registry::start_with(dir, Some(&htpasswd))
    }

    fn start_with(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let mut last_error = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let data = dir.join("registry-data");
            std::fs::create_dir_all(&data).expect("mkdir registry-data");
            let config = dir.join(match htpasswd {
                Some(_) => "registry-auth.yml",
                None => "registry.yml",
            });
            let auth = match htpasswd {
                Some(path) => format!(
                    "auth: {{htpasswd: {{realm: imagegate-test, path: {}}}}}\n",
                    yaml_string(&path.to_string_lossy())
                ),
                None => String::new(),
            };
            // Accesslog on: the log shows what the registry served when a test fails.
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log: {{level: warn}}\n\
                     storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                     http: {{addr: 127.0.0.1:{port}, secret: imagegate-test-harness}}\n\
                     {auth}",
                    yaml_string(&data.to_string_lossy())
                ),
            )
            .expect("write registry.yml");
            let log = dir.join(format!(
                "registry-{}{attempt}.log",
                if htpasswd.is_some() { "auth-" } else { "" }
            ));
            let log_file = std::fs::File::create(&log).expect("create registry log");
            let mut cmd = command("docker-registry");
            cmd.arg("serve")
                .arg(&config)
                // The package's environment knobs would override our config.
                .env_remove("REGISTRY_HTTP_ADDR")
                .env_remove("REGISTRY_AUTH")
                .stdout(Stdio::from(log_file.try_clone().expect("dup log fd")))
                .stderr(Stdio::from(log_file));
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("test harness: cannot start docker-registry: {e}"));
            let mut registry = Registry {
                child,
                port,
                log,
                auth: htpasswd.is_some(),
            };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(e) => last_error = e,
            }
            // `registry` drops here, killing the process.
        }
        panic!(
            "test harness: docker-registry did not start after {START_ATTEMPTS} attempts: {last_error}"
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("docker-registry exited ({status}):\n{log}"));
            }
            if probe_v2(self.port, self.auth) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "/v2/ on port {} did not answer within {START_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True if a distribution registry answers `GET /v2/` on `port` with 200
/// (401 with `auth`: the challenge proves it is up).
fn probe_v2(port: u16, auth: bool) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    // The API version header proves it is our registry and not some other
    // process that took the port.
    response.split(' ').nth(1) == Some(if auth { "401" } else { "200" })
        && response
            .to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("test harness: bind an ephemeral port on 127.0.0.1")
        .port()
}

/// A double-quoted YAML scalar.
fn yaml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
