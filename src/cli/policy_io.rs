//! `policy import` and `policy export`: moving policy between a node's
//! files (policy.json, registries.d, CRI-O's per-namespace policies) and
//! the Kubernetes documents kept in Git (DESIGN decision 12).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::Error;
use crate::crd::{ClusterImagePolicy, ClusterImagePolicySpec};
use crate::engine::Mode;
use crate::policy::compose::compose;
use crate::policy::{KeySource, ParseOptions, Policy, Requirement};
use crate::policyset::{LoadedDocument, load_file};
use crate::signature::registries_d::RegistryConfiguration;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The node's containers-policy.json (default: c/image's default location).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The node's registries.d directory, carried into `spec.lookaside`.
    #[arg(long = "registries-d", alias = "registries.d")]
    pub registries_d: Option<PathBuf>,
    /// The ClusterImagePolicy's name.
    #[arg(long)]
    pub name: String,
    /// `spec.mode` (Warn is the usual first step of a roll-out).
    #[arg(long, value_enum, default_value = "enforce")]
    pub mode: ModeArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Enforce,
    Warn,
    Audit,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Enforce => Mode::Enforce,
            ModeArg::Warn => Mode::Warn,
            ModeArg::Audit => Mode::Audit,
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write `policy.json`, `registries.d/imagegate.yaml`,
    /// `keys/` and `<namespace>.json` (CRI-O's `signature_policy_dir`) into.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the node will find the exported key files (keyPath values are
    /// rewritten to it).
    #[arg(long, default_value = "/etc/containers/imagegate/keys")]
    pub key_dir: String,
    /// Read the documents from the cluster (kubeconfig or in-cluster
    /// service account) instead of files; `keyRef` keys are read too.
    #[arg(long, conflicts_with = "files")]
    pub from_cluster: bool,
    /// imagegate's namespace, where the `keyRef`s of cluster documents point
    /// (with `--from-cluster`).
    #[arg(long, env = "IMAGEGATE_NAMESPACE", default_value = "imagegate")]
    pub namespace: String,
    /// YAML files holding ClusterImagePolicy and ImagePolicy objects.
    #[arg(required_unless_present = "from_cluster")]
    pub files: Vec<PathBuf>,
}

/// Every document of the cluster, compiled, with `keyRef` keys inlined.
async fn cluster_documents(namespace: &str) -> Result<Vec<LoadedDocument>, Error> {
    use crate::crd::{ClusterImagePolicy, ImagePolicy};
    use kube::api::{Api, ListParams};
    let client = kube::Client::try_default()
        .await
        .map_err(|e| Error::Config(format!("Kubernetes API: {e}")))?;
    let mut out = Vec::new();
    let list = |e: kube::Error| Error::Config(format!("listing policy documents: {e}"));
    for p in Api::<ClusterImagePolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list)?
    {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut doc = crate::policyset::load_cluster_policy(&name, &p.spec);
        crate::controller::policies::resolve_key_refs(&mut doc, namespace, &client).await;
        out.push(doc);
    }
    for p in Api::<ImagePolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(list)?
    {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let mut doc = crate::policyset::load_namespaced_policy(&ns, &name, &p.spec);
        crate::controller::policies::resolve_key_refs(&mut doc, &ns, &client).await;
        out.push(doc);
    }
    Ok(out)
}

fn config_error(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

/// Inlines key files as `keyData`, so the document carries its keys into Git.
fn inline_keys(policy: &mut Policy) -> Result<(), Error> {
    let inline = |r: &mut Requirement| -> Result<(), Error> {
        if let Requirement::SignedBy(sb) = r {
            let paths = match &sb.keys {
                KeySource::Path(p) => vec![p.clone()],
                KeySource::Paths(ps) => ps.clone(),
                _ => return Ok(()),
            };
            let mut data = Vec::new();
            for p in paths {
                data.extend(
                    std::fs::read(&p)
                        .map_err(|e| Error::Config(format!("reading key file {p}: {e}")))?,
                );
            }
            sb.keys = KeySource::Data(data);
        }
        Ok(())
    };
    policy.try_for_each_requirement_mut(inline)
}

pub fn import(a: ImportArgs) -> Result<u8, Error> {
    let path = match &a.policy {
        Some(p) => p.clone(),
        None => PathBuf::from("/etc/containers/policy.json"),
    };
    let bytes =
        std::fs::read(&path).map_err(|e| Error::Config(format!("open {}: {e}", path.display())))?;
    let mut policy = Policy::parse(&bytes, ParseOptions::POLICY_FILE).map_err(|e| {
        Error::Config(format!(
            "invalid policy in {:?}: {}",
            path.display().to_string(),
            e.with_path()
        ))
    })?;
    inline_keys(&mut policy)?;
    let lookaside = match &a.registries_d {
        Some(dir) => {
            let config = RegistryConfiguration::load_dir(dir).map_err(config_error)?;
            Some(serde_json::to_value(registries_d_document(&config)).map_err(config_error)?)
        }
        None => None,
    };
    let object = ClusterImagePolicy::new(
        &a.name,
        ClusterImagePolicySpec {
            policy: policy.to_json(),
            lookaside,
            mode: a.mode.into(),
        },
    );
    let mut value = serde_json::to_value(&object).map_err(config_error)?;
    if let Some(m) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.retain(|_, v| !v.is_null());
    }
    print!("{}", serde_saphyr::to_string(&value).map_err(config_error)?);
    Ok(0)
}

/// A registries.d document with the configuration's entries.
fn registries_d_document(config: &RegistryConfiguration) -> serde_json::Value {
    let section = |ns: &crate::signature::registries_d::RegistryNamespace| {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("lookaside", &ns.lookaside),
            ("lookaside-staging", &ns.lookaside_staging),
            ("sigstore", &ns.sigstore),
            ("sigstore-staging", &ns.sigstore_staging),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), serde_json::Value::from(v.as_str()));
            }
        }
        if let Some(b) = ns.use_sigstore_attachments {
            m.insert("use-sigstore-attachments".into(), b.into());
        }
        serde_json::Value::Object(m)
    };
    let mut doc = serde_json::Map::new();
    if let Some(d) = &config.default_docker {
        doc.insert("default-docker".into(), section(d));
    }
    if !config.docker.is_empty() {
        doc.insert(
            "docker".into(),
            serde_json::Value::Object(
                config
                    .docker
                    .iter()
                    .map(|(k, v)| (k.clone(), section(v)))
                    .collect(),
            ),
        );
    }
    serde_json::Value::Object(doc)
}

/// Copies `keyPath` files into `keys/` and points the policy at `key_dir`.
fn export_keys(
    policy: &mut Policy,
    out: &Path,
    key_dir: &str,
    written: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let keys_out = out.join("keys");
    let mut relocate = |p: &str| -> Result<String, Error> {
        if let Some(done) = written.get(p) {
            return Ok(done.clone());
        }
        let bytes =
            std::fs::read(p).map_err(|e| Error::Config(format!("reading key file {p}: {e}")))?;
        let name = format!(
            "{}-{}",
            written.len() + 1,
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("key.gpg")
        );
        std::fs::create_dir_all(&keys_out).map_err(config_error)?;
        std::fs::write(keys_out.join(&name), bytes).map_err(config_error)?;
        let target = format!("{}/{name}", key_dir.trim_end_matches('/'));
        written.insert(p.to_string(), target.clone());
        Ok(target)
    };
    policy.try_for_each_requirement_mut(|r| {
        if let Requirement::SignedBy(sb) = r {
            sb.keys = match &sb.keys {
                KeySource::Path(p) => KeySource::Path(relocate(p)?),
                KeySource::Paths(ps) => {
                    KeySource::Paths(ps.iter().map(|p| relocate(p)).collect::<Result<_, _>>()?)
                }
                KeySource::Ref(r) => {
                    return Err(Error::Config(format!(
                        "keyRef {r} can only be exported from a cluster; inline the key as keyData"
                    )));
                }
                other => other.clone(),
            };
        }
        Ok(())
    })
}

pub async fn export(a: ExportArgs) -> Result<u8, Error> {
    let mut documents: Vec<LoadedDocument> = Vec::new();
    if a.from_cluster {
        documents = cluster_documents(&a.namespace).await?;
    }
    for f in &a.files {
        documents.extend(load_file(f).map_err(Error::Config)?);
    }
    let mut cluster = Vec::new();
    let mut namespaced: BTreeMap<String, Vec<Policy>> = BTreeMap::new();
    let mut lookasides = Vec::new();
    for d in &documents {
        let policy = d
            .policy
            .clone()
            .map_err(|e| Error::Config(format!("{}: {e}", d.id)))?;
        if d.mode != Mode::Enforce {
            // CRI-O has no warn or audit mode: only enforced documents go to nodes.
            eprintln!(
                "skipping {} (mode {}): nodes only enforce",
                d.id,
                d.mode.as_str()
            );
            continue;
        }
        if let Some(l) = &d.lookaside {
            lookasides.push((d.id.clone(), serde_json::to_vec(l).map_err(config_error)?));
        }
        match &d.namespace {
            None => cluster.push(policy),
            Some(ns) => namespaced.entry(ns.clone()).or_default().push(policy),
        }
    }
    std::fs::create_dir_all(a.out.join("registries.d")).map_err(config_error)?;
    let mut keys = BTreeMap::new();
    let write_policy = |name: &str,
                        docs: Vec<&Policy>,
                        keys: &mut BTreeMap<String, String>|
     -> Result<(), Error> {
        let mut composed = compose(&docs);
        export_keys(&mut composed, &a.out, &a.key_dir, keys)?;
        let text = serde_json::to_string_pretty(&composed.to_json()).map_err(config_error)?;
        std::fs::write(a.out.join(name), text + "\n").map_err(config_error)?;
        println!("wrote {}", a.out.join(name).display());
        Ok(())
    };
    write_policy("policy.json", cluster.iter().collect(), &mut keys)?;
    for (ns, docs) in &namespaced {
        write_policy(
            &format!("{ns}.json"),
            cluster.iter().chain(docs.iter()).collect(),
            &mut keys,
        )?;
    }
    let mut merger = crate::signature::registries_d::ConfigMerger::new();
    for (id, yaml) in &lookasides {
        merger.add_yaml(id, yaml).map_err(config_error)?;
    }
    let registries = registries_d_document(&merger.finish());
    let path = a.out.join("registries.d/imagegate.yaml");
    std::fs::write(
        &path,
        serde_saphyr::to_string(&registries).map_err(config_error)?,
    )
    .map_err(config_error)?;
    println!("wrote {}", path.display());
    Ok(0)
}
