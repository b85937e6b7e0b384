//! A Debian `docker-registry` (distribution 2.8) on 127.0.0.1: plain HTTP,
//! storage in the harness directory, killed on drop; no auth, `htpasswd`
//! Basic auth ([`Registry::start_with_htpasswd`]), or Bearer tokens from a
//! token server of the harness ([`Registry::start_with_token_server`], the
//! flow of Docker Hub, Harbor, Quay and GHCR) for the pull-secret tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Whether `/v2/` answers 401 (auth on) rather than 200.
    auth: bool,
    /// The token server of a `token`-auth registry.
    token_server: Option<TokenServer>,
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

    /// Starts a registry that serves the same storage as one started with
    /// [`Registry::start`] on `dir`, with distribution's `token` auth: every
    /// request needs a Bearer token for its repository scope, issued by a
    /// [`TokenServer`] (also started here, stopped with the registry) to
    /// `user`/`password` only.
    pub fn start_with_token_server(dir: &Path, user: &str, password: &str) -> Registry {
        let server = TokenServer::start(dir, user, password);
        let auth = format!(
            "auth: {{token: {{realm: \"{}\", service: {TOKEN_SERVICE}, issuer: {TOKEN_ISSUER}, rootcertbundle: {}}}}}\n",
            server.realm(),
            yaml_string(&server.root_pem.to_string_lossy())
        );
        let mut registry = Registry::start_with_auth(dir, "token", &auth);
        registry.token_server = Some(server);
        registry
    }

    fn start_with(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        match htpasswd {
            Some(path) => Registry::start_with_auth(
                dir,
                "htpasswd",
                &format!(
                    "auth: {{htpasswd: {{realm: imagegate-test, path: {}}}}}\n",
                    yaml_string(&path.to_string_lossy())
                ),
            ),
            None => Registry::start_with_auth(dir, "", ""),
        }
    }

    /// `auth_name` names the config and log files (empty: no auth);
    /// `auth` is the config's `auth:` line.
    fn start_with_auth(dir: &Path, auth_name: &str, auth: &str) -> Registry {
        let mut last_error = String::new();
        for attempt in 0..START_ATTEMPTS {
            let port = free_port();
            let data = dir.join("registry-data");
            std::fs::create_dir_all(&data).expect("mkdir registry-data");
            let suffix = if auth_name.is_empty() {
                String::new()
            } else {
                format!("auth-{auth_name}-")
            };
            let config = dir.join(format!("registry-{suffix}config.yml"));
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
            let log = dir.join(format!("registry-{suffix}{attempt}.log"));
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
                auth: !auth_name.is_empty(),
                token_server: None,
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
        if let Some(server) = &self.token_server {
            server.stop.store(true, Ordering::Relaxed);
        }
    }
}

impl Registry {
    /// Token requests the token server answered so far: `(query, granted)`.
    pub fn token_requests(&self) -> Vec<(String, bool)> {
        self.token_server
            .as_ref()
            .map(|s| s.log.lock().unwrap().clone())
            .unwrap_or_default()
    }
}

const TOKEN_SERVICE: &str = "imagegate-test-registry";
const TOKEN_ISSUER: &str = "imagegate-test-token-server";

/// A docker token server (the `realm` of a `Bearer` challenge): `GET
/// /token?service=…&scope=repository:NAME:pull` with Basic credentials
/// answers `{"token": JWT}`, an ES256 JWT whose `x5c` header carries the
/// signing certificate, which the registry trusts through `rootcertbundle`.
/// Wrong or missing credentials get 401, as private repositories do.
struct TokenServer {
    port: u16,
    root_pem: PathBuf,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(String, bool)>>>,
}

impl TokenServer {
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate().expect("token signing key");
        let mut params = rcgen::CertificateParams::new(vec!["imagegate-test-token".into()])
            .expect("token certificate parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("token certificate");
        let root_pem = dir.join("token-root.pem");
        std::fs::write(&root_pem, cert.pem()).expect("write token-root.pem");
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .expect("token key for ring");
        let b64 = |bytes: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let header = b64url(
            serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [b64(cert.der())]})
                .to_string()
                .as_bytes(),
        );
        let expected = format!("Basic {}", b64(format!("{user}:{password}").as_bytes()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = stream.set_nonblocking(false);
                let _ = answer_token_request(stream, &expected, &header, &signer, &log2);
            }
        });
        TokenServer {
            port,
            root_pem,
            stop,
            log,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One HTTP/1.1 exchange (`Connection: close`) of the token server.
fn answer_token_request(
    mut stream: TcpStream,
    expected_auth: &str,
    header: &str,
    signer: &ring::signature::EcdsaKeyPair,
    log: &Mutex<Vec<(String, bool)>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 << 10 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request);
    let target = request.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let authorized = request.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("authorization") && value.trim() == expected_auth
        })
    });
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    log.lock().unwrap().push((query.to_string(), authorized));
    let (status, body) = if !authorized {
        (
            "401 Unauthorized",
            r#"{"details":"incorrect username or password"}"#.to_string(),
        )
    } else {
        let access: Vec<serde_json::Value> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .filter_map(|(_, scope)| {
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({"type": kind, "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let account = params
            .iter()
            .find(|(k, _)| k == "account")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": account, "aud": TOKEN_SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", log.lock().unwrap().len()),
            "access": access,
        });
        let signing_input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
        let signature = signer
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("sign token");
        let token = format!("{signing_input}.{}", b64url(signature.as_ref()));
        (
            "200 OK",
            serde_json::json!({"token": token, "expires_in": 300}).to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
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
