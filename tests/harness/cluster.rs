//! A real Kubernetes control plane for the tests: `scripts/cluster.sh`
//! (etcd, kube-apiserver, kube-controller-manager from the pinned Go
//! modules, and e2e-node standing in for kubelets and the pod network),
//! imagegate installed into it with the chart and helm, and the tools users
//! drive it with: `kubectl`, `helm`, and the `kube` crate for assertions.
//!
//! [`shared()`] is one control plane per test process with imagegate
//! installed ([`TEST_VALUES`]); tests on it keep to namespaces and
//! registries of their own ([`Cluster::namespace`], a [`super::Harness`]
//! each, ClusterImagePolicies scoped to that registry). Tests that stop,
//! restart or uninstall things start their own with [`Cluster::start`].
//! Either is stopped when the test process exits (a watchdog of
//! cluster.sh's) or, for a dedicated one, when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tools::{describe, run};

/// The release the tests install.
pub const RELEASE: &str = "imagegate";
/// Its namespace.
pub const RELEASE_NAMESPACE: &str = "imagegate-system";

/// The chart values every test installation starts from: two replicas (so
/// leader election and status writing by one holder are real), plain HTTP
/// to the harness's registries on 127.0.0.1, and imagegate's own pull
/// secret [`OWN_PULL_SECRET`] (absent until a test creates it).
pub const TEST_VALUES: &[&str] = &[
    "--set",
    "replicaCount=2",
    "--set",
    "extraArgs={--tls-verify=false}",
    "--set",
    "registryAuth.pullSecrets={imagegate-pull}",
];

/// The pull secret (in [`RELEASE_NAMESPACE`]) imagegate uses after the pod's
/// and its ServiceAccount's.
pub const OWN_PULL_SECRET: &str = "imagegate-pull";

/// What kubectl or helm did: exit code and both streams.
#[derive(Debug, Clone)]
pub struct CommandResult {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CommandResult {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics with both streams unless the command succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success(),
            "`{}` failed ({}):\n{}{}",
            self.command,
            self.code,
            self.stderr,
            self.stdout
        );
        &self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    pub fn failed(&self) -> &str {
        assert!(
            !self.success(),
            "`{}` succeeded but should have failed:\n{}{}",
            self.command,
            self.stderr,
            self.stdout
        );
        &self.stderr
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("`{}`: not JSON ({e}): {}", self.command, self.stdout))
    }
}

/// A running control plane.
pub struct Cluster {
    dir: PathBuf,
    /// Dedicated clusters are stopped on drop; the shared one lives as long
    /// as the process.
    dedicated: bool,
    seq: AtomicUsize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dedicated {
            let _ = run(&mut self.script(&["down"]), None);
        }
    }
}

static SHARED: OnceLock<Cluster> = OnceLock::new();

/// The process's control plane with imagegate installed ([`TEST_VALUES`]).
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(|| {
        let c = Cluster::up(false);
        c.install(&[]);
        c
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Cluster {
    /// A control plane of this test's own (no imagegate yet: call
    /// [`Cluster::install`]), stopped when dropped.
    pub fn start() -> Cluster {
        Cluster::up(true)
    }

    fn up(dedicated: bool) -> Cluster {
        // cluster.sh removes the directory when it stops the control plane
        // (on drop, or when this process exits).
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let cluster = Cluster {
            dir: std::env::temp_dir().join(format!("imagegate-cluster-{}-{n}", std::process::id())),
            dedicated,
            seq: AtomicUsize::new(0),
        };
        let pid = std::process::id().to_string();
        let out = run(&mut cluster.script(&["up", "--owner-pid", &pid]), None);
        assert!(
            out.status.success(),
            "scripts/cluster.sh up failed:\n{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        cluster
    }

    fn script(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(repo_root().join("scripts/cluster.sh"));
        cmd.args(args)
            .env("IMAGEGATE_CLUSTER_DIR", &self.dir)
            .env("IMAGEGATE_BIN", env!("CARGO_BIN_EXE_imagegate"))
            .stdin(Stdio::null());
        cmd
    }

    /// The control plane's directory (logs/, audit.log, node/, pki/).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    pub fn bin(&self, tool: &str) -> PathBuf {
        self.dir.join("bin").join(tool)
    }

    /// `helm upgrade --install` of the chart in this tree with
    /// [`TEST_VALUES`] and `extra` (later values win); returns when the
    /// webhook answers through the apiserver.
    pub fn install(&self, extra: &[&str]) {
        let mut args = vec!["install"];
        args.extend_from_slice(TEST_VALUES);
        args.extend_from_slice(extra);
        let out = run(&mut self.script(&args), None);
        assert!(
            out.status.success(),
            "scripts/cluster.sh install failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.imagegate_logs_tail(40)
        );
    }

    /// `scripts/cluster.sh restart COMPONENT` (etcd, kube-apiserver,
    /// kube-controller-manager, e2e-node).
    pub fn restart(&self, component: &str) {
        let out = run(&mut self.script(&["restart", component]), None);
        assert!(
            out.status.success(),
            "restart {component}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn tool(&self, tool: &str, args: &[&str], input: Option<&[u8]>) -> CommandResult {
        let mut cmd = Command::new(self.bin(tool));
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            // kubectl and helm keep caches under HOME; keep them here.
            .env("HOME", self.dir.join("home"))
            .env_remove("KUBERNETES_SERVICE_HOST");
        let out = run(&mut cmd, input);
        CommandResult {
            command: describe(&cmd),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> CommandResult {
        self.tool("kubectl", args, None)
    }

    /// Runs kubectl with `input` on stdin (`-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> CommandResult {
        self.tool("kubectl", args, Some(input.as_bytes()))
    }

    /// `kubectl apply -f -` of one object (JSON is YAML).
    pub fn apply(&self, object: &Value) -> CommandResult {
        self.kubectl_stdin(&["apply", "-f", "-"], &object.to_string())
    }

    /// `kubectl create -f -` of one object.
    pub fn create(&self, object: &Value) -> CommandResult {
        self.kubectl_stdin(&["create", "-f", "-"], &object.to_string())
    }

    /// Runs helm as the cluster admin.
    pub fn helm(&self, args: &[&str]) -> CommandResult {
        self.tool("helm", args, None)
    }

    /// A `kube` client as the cluster admin.
    pub async fn client(&self) -> kube::Client {
        imagegate::ensure_crypto_provider();
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Creates a namespace of this test's own: `<prefix>-<n>-<pid>`.
    pub fn namespace(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{n}-{}", std::process::id());
        self.kubectl(&["create", "namespace", &name]).ok();
        name
    }

    /// Every event of the apiserver's audit log so far.
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The names of the Ready imagegate pods of the release.
    pub fn ready_imagegate_pods(&self) -> Vec<String> {
        let pods = self
            .kubectl(&[
                "-n",
                RELEASE_NAMESPACE,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=imagegate,app.kubernetes.io/instance=imagegate",
                "-o",
                "json",
            ])
            .json();
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
            .collect()
    }

    /// A replica's `/metrics`, through the apiserver's pod proxy.
    pub fn pod_metrics(&self, pod: &str) -> CommandResult {
        self.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{RELEASE_NAMESPACE}/pods/http:{pod}:9090/proxy/metrics"),
        ])
    }

    /// Waits until every Ready replica decides with `generation` (or later)
    /// of `document` (`ClusterImagePolicy/name`, `ImagePolicy/ns/name`),
    /// read from its `imagegate_policy_generation` metric; or, for
    /// `generation` 0, until none serves the document any more.
    pub fn wait_policy_served(&self, document: &str, generation: i64) {
        let needle = format!("imagegate_policy_generation{{document=\"{document}\"}} ");
        wait_for(
            &format!("{document} generation {generation} on every replica"),
            || {
                let pods = self.ready_imagegate_pods();
                !pods.is_empty()
                    && pods.iter().all(|p| {
                        let m = self.pod_metrics(p);
                        m.success() && {
                            let served = m
                                .stdout
                                .lines()
                                .find_map(|l| l.strip_prefix(&needle))
                                .and_then(|v| v.trim().parse::<i64>().ok());
                            match generation {
                                0 => served.is_none(),
                                g => served.is_some_and(|s| s >= g),
                            }
                        }
                    })
            },
        );
    }

    /// Applies `object` (a ClusterImagePolicy or ImagePolicy) and waits
    /// until every replica decides with it.
    pub fn apply_policy(&self, object: &Value) {
        self.apply(object).ok();
        let kind = object["kind"].as_str().expect("kind");
        let name = object["metadata"]["name"].as_str().expect("name");
        let (resource, document) = match object["metadata"]["namespace"].as_str() {
            Some(ns) => (
                vec!["-n", ns, "get", "imagepolicy", name],
                format!("{kind}/{ns}/{name}"),
            ),
            None => (
                vec!["get", "clusterimagepolicy", name],
                format!("{kind}/{name}"),
            ),
        };
        let mut args = resource;
        args.extend(["-o", "jsonpath={.metadata.generation}"]);
        let generation: i64 = self.kubectl(&args).ok().trim().parse().expect("generation");
        self.wait_policy_served(&document, generation);
    }

    /// The last `lines` lines of every imagegate container log, for failure
    /// messages.
    pub fn imagegate_logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(dirs) = std::fs::read_dir(self.dir.join("node/pods")) else {
            return out;
        };
        for d in dirs.flatten() {
            if let Ok(text) = std::fs::read_to_string(d.path().join("imagegate.log")) {
                let all: Vec<&str> = text.lines().collect();
                out.push_str(&format!("--- {}\n", d.file_name().to_string_lossy()));
                for l in &all[all.len().saturating_sub(lines)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Every line the egress proxy logged (one per webhook connection of
    /// the apiserver).
    pub fn egress_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("node/egress.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Polls `done` every 200 ms until it holds; panics naming `what` after two
/// minutes. For waiting on the cluster to converge (an event the test
/// cannot subscribe to from outside), never for asserting speed: the bound
/// only turns a hang into a failure.
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
