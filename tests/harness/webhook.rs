//! The real `imagegate serve` binary run as a webhook without a cluster:
//! policy documents in a directory, a serving certificate from a fresh test
//! CA, ephemeral ports on 127.0.0.1, and an HTTPS client that trusts only
//! that CA (the caBundle kube-apiserver would use). Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imagegate::certs::{generate_ca, issue_serving_cert};

/// A running `imagegate serve --policies DIR`.
pub struct WebhookServer {
    child: Child,
    /// The HTTPS admission address.
    pub addr: SocketAddr,
    /// The plain-HTTP metrics address.
    pub metrics: SocketAddr,
    /// The watched policies directory (write files here to change policy).
    pub policies: PathBuf,
    /// Trusts only the test CA; 30 s timeout.
    pub client: reqwest::Client,
    /// Every stderr line after the serving line, as it arrives.
    log: Arc<Mutex<Vec<String>>>,
    /// The thread reading stderr; ends when the process closes it.
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WebhookServer {
    /// Writes `files` (name, YAML text) into `dir/policies`, certificates
    /// into `dir`, and starts `imagegate serve` with `extra_args`; returns
    /// once it has logged the addresses it serves on.
    pub fn spawn(dir: &Path, files: &[(&str, String)], extra_args: &[&str]) -> WebhookServer {
        imagegate::ensure_crypto_provider();
        let policies = dir.join("policies");
        std::fs::create_dir_all(&policies).expect("mkdir policies");
        for (name, text) in files {
            std::fs::write(policies.join(name), text).expect("write a policy file");
        }
        let ca = generate_ca("imagegate test CA", time::Duration::days(1)).expect("test CA");
        let leaf = issue_serving_cert(
            &ca,
            &["localhost".into(), "127.0.0.1".into()],
            time::Duration::days(1),
        )
        .expect("serving certificate");
        std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).expect("write tls.crt");
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).expect("write tls.key");
        let mut child = Command::new(env!("CARGO_BIN_EXE_imagegate"))
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--tls-verify=false",
            ])
            .arg("--policies")
            .arg(&policies)
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(extra_args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start imagegate serve");
        let stderr = child.stderr.take().expect("serve's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let (addr, metrics) = loop {
            let line = lines
                .next()
                .expect("imagegate serve exited before serving")
                .expect("read stderr");
            if let Some(rest) = line.strip_prefix("imagegate: serving on https://") {
                let (addr, rest) = rest.split_once(' ').expect("serving line");
                let metrics = rest
                    .trim_start_matches("(metrics on http://")
                    .trim_end_matches(')');
                break (
                    addr.parse().expect("admission address"),
                    metrics.parse().expect("metrics address"),
                );
            }
        };
        // Keep draining the logs (so the child never blocks on a full
        // pipe), and keep them for the tests that read the decision log.
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let client = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).expect("CA certificate")
            ])
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTPS client");
        WebhookServer {
            child,
            addr,
            metrics,
            policies,
            client,
            log,
            log_reader: Some(log_reader),
        }
    }

    /// The first log line (a JSON object) for which `wanted` holds, waiting
    /// up to `patience` for it: the server writes its log in batches.
    pub fn log_line(
        &self,
        patience: Duration,
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let until = Instant::now() + patience;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|l| wanted(l));
            if found.is_some() || Instant::now() >= until {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to end and its stderr to be
    /// read to the end; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM");
        let status = self.child.wait().expect("wait for imagegate serve");
        if let Some(reader) = self.log_reader.take() {
            reader.join().expect("log reader");
        }
        status.success()
    }

    /// `https://localhost:PORT<endpoint>` (the certificate's name).
    pub fn url(&self, endpoint: &str) -> String {
        format!("https://localhost:{}{endpoint}", self.addr.port())
    }

    /// The serve process's pid (signals, /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not crashed).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}
