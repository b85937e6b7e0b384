//! Manifest lists and OCI indexes: parsing and the instance c/image selects per platform (semantics §7.1).
//!
//! CRI-O pulls a multi-platform image with `copy.Image` and
//! `ImageListSelection == CopySystemImage`: c/image parses the list
//! (`manifest.ListFromBlob` with the HTTP media type), asks it for the
//! instance that fits the node (`ChooseInstanceByCompression`, with zstd
//! instances preferred) and policy-checks only that instance. The webhook must
//! predict that choice, and, because it admits pods for every node of a
//! cluster, check every instance any node platform could select
//! ([`instances_for_platforms`]).
//!
//! Parsing follows Go's `encoding/json` as c/image uses it, not serde's
//! defaults, because a difference in which entries are seen is a difference in
//! which instance is verified: keys match struct fields case-insensitively
//! (`"Manifests"` is `manifests`), the last of repeated keys wins, `null`
//! leaves a field at its zero value (an OCI entry with `"platform": null` has
//! no platform), unknown keys are ignored, and a value of the wrong type fails
//! the whole document.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use super::ManifestError;
use crate::reference::Digest;
use crate::strictjson::{self, JsonValue};

// The media types are the manifest module's; these names are the ones the
// list code and its callers use.
pub use super::{
    DOCKER_V2_LIST_MEDIA_TYPE, DOCKER_V2_SCHEMA1_MEDIA_TYPE, DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE,
    DOCKER_V2_SCHEMA2_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE as OCI_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MANIFEST_MEDIA_TYPE as OCI_MANIFEST_MEDIA_TYPE,
};

/// Index-entry annotation marking an instance whose layers are zstd-compressed
/// (`OCI1InstanceAnnotationCompressionZSTD`); its value must be `"true"`.
pub const ANNOTATION_COMPRESSION_ZSTD: &str = "io.github.containers.compression.zstd";
/// Index-entry annotation marking a zstd:chunked instance with a sentinel
/// layer (`OCI1InstanceAnnotationZstdChunkedSentinel`); its value must be `"true"`.
pub const ANNOTATION_ZSTD_CHUNKED_SENTINEL: &str = "io.github.containers.zstd-chunked.sentinel";

/// `manifest.NormalizedMIMEType`: the effective type of a media type a
/// server returned. Anything unrecognised (`text/plain`, `""`, …) is treated
/// as signed schema 1, as c/image does.
pub fn normalized_mime_type(media_type: &str) -> &str {
    match media_type {
        "application/json" => DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE,
        DOCKER_V2_SCHEMA1_MEDIA_TYPE
        | DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE
        | OCI_MANIFEST_MEDIA_TYPE
        | OCI_INDEX_MEDIA_TYPE
        | DOCKER_V2_SCHEMA2_MEDIA_TYPE
        | DOCKER_V2_LIST_MEDIA_TYPE => media_type,
        _ => DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE,
    }
}

/// `manifest.MIMETypeIsMultiImage`: whether c/image treats a manifest
/// served with this media type as a list (it normalizes first).
pub fn is_list_media_type(media_type: &str) -> bool {
    matches!(
        normalized_mime_type(media_type),
        DOCKER_V2_LIST_MEDIA_TYPE | OCI_INDEX_MEDIA_TYPE
    )
}

/// A platform as c/image compares them: OS, architecture (Go names: `amd64`,
/// `arm64`, `arm`, `ppc64le`, `s390x`, …) and an optional CPU variant
/// (`v7`, `v8`). `os.version` and `os.features` are never compared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    /// `None` is Go's empty string; `Some("")` is never constructed.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts; an empty variant means none.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// Parses `os/arch` or `os/arch/variant` (`linux/arm/v7`). Names are kept
    /// as written: c/image compares them verbatim and does not map `aarch64`
    /// to `arm64`.
    pub fn parse(s: &str) -> Result<Platform, ManifestError> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        match parts.as_slice() {
            [os, arch] if valid(os) && valid(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if valid(os) && valid(arch) && valid(variant) => {
                Ok(Platform::new(os, arch, Some(variant)))
            }
            _ => Err(ManifestError(format!(
                "invalid platform {s:?}: expected os/architecture[/variant]"
            ))),
        }
    }

    /// The platform of this machine as Go names it (`runtime.GOOS`,
    /// `runtime.GOARCH`), with the CPU variant c/image detects: for ARM on
    /// Linux from `/proc/cpuinfo`, on macOS and Windows fixed per architecture.
    pub fn current() -> Platform {
        let os = go_os(std::env::consts::OS);
        let arch = go_arch(std::env::consts::ARCH);
        let variant = cpu_variant(&os, &arch);
        Platform::new(&os, &arch, variant.as_deref())
    }

    /// Whether this looks like the placeholder platform of an attestation or
    /// other non-image entry (`unknown/unknown`), which no node selects.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    fn variant_str(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

fn go_os(rust_os: &str) -> String {
    match rust_os {
        "macos" => "darwin".into(),
        other => other.into(),
    }
}

fn go_arch(rust_arch: &str) -> String {
    match rust_arch {
        "x86_64" => "amd64".into(),
        "x86" => "386".into(),
        "aarch64" => "arm64".into(),
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le".into(),
        "powerpc64" => "ppc64".into(),
        "powerpc" => "ppc".into(),
        "mips64" if cfg!(target_endian = "little") => "mips64le".into(),
        "mips" if cfg!(target_endian = "little") => "mipsle".into(),
        "loongarch64" => "loong64".into(),
        other => other.into(),
    }
}

/// `getCPUVariant`.
fn cpu_variant(os: &str, arch: &str) -> Option<String> {
    if os == "darwin" || os == "windows" {
        return match arch {
            "arm64" => Some("v8".into()),
            "arm" => Some("v7".into()),
            _ => None,
        };
    }
    if arch != "arm" && arch != "arm64" {
        return None;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    arm_variant_from_cpuinfo(&cpuinfo)
}

/// `getCPUVariantArm`: the first core's "Cpu architecture" line, with the
/// Raspberry Pi Zero correction (the kernel reports 7 for an ARMv6 core).
fn arm_variant_from_cpuinfo(cpuinfo: &str) -> Option<String> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let arch = field("Cpu architecture")?.to_lowercase();
    let v = match arch.as_str() {
        "8" | "aarch64" => "v8",
        "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "7" => {
            let model = field("model name")?;
            if model.to_lowercase().starts_with("armv6-compatible") {
                "v6"
            } else {
                "v7"
            }
        }
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => return None,
    };
    Some(v.to_string())
}

/// c/image's variant `compatibility` table: known variants per architecture,
/// most capable first.
fn compatible_variants(arch: &str) -> Option<&'static [&'static str]> {
    match arch {
        "arm" => Some(&["v8", "v7", "v6", "v5"]),
        "arm64" => Some(&["v8"]),
        _ => None,
    }
}

/// `platform.WantedPlatforms` for a node whose OS, architecture and variant
/// are `p` (as if given as `OSChoice`/`ArchitectureChoice`/`VariantChoice`):
/// the acceptable instance platforms, most preferred first.
///
/// With a variant, the compatible variants from it downwards, then no
/// variant (`arm/v7` → v7, v6, v5, none). Without, no variant first, then
/// every known variant (`arm64` → none, v8).
pub fn wanted_platforms(p: &Platform) -> Vec<Platform> {
    let mut variants: Vec<Option<&str>> = Vec::new();
    match p.variant.as_deref() {
        Some(wanted) => {
            match compatible_variants(&p.architecture)
                .and_then(|order| order.iter().position(|v| *v == wanted).map(|i| &order[i..]))
            {
                Some(tail) => variants.extend(tail.iter().map(|v| Some(*v))),
                // A variant c/image knows nothing about: only itself.
                None => variants.push(Some(wanted)),
            }
            variants.push(None);
        }
        None => {
            variants.push(None);
            if let Some(all) = compatible_variants(&p.architecture) {
                variants.extend(all.iter().map(|v| Some(*v)));
            }
        }
    }
    variants
        .into_iter()
        .map(|v| Platform::new(&p.os, &p.architecture, v))
        .collect()
}

/// `platform.MatchesPlatform`: OS, architecture and variant all equal.
fn matches_platform(image: &Platform, wanted: &Platform) -> bool {
    image.architecture == wanted.architecture
        && image.os == wanted.os
        && image.variant_str() == wanted.variant_str()
}

/// Which list format a [`ManifestList`] was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `application/vnd.docker.distribution.manifest.list.v2+json`.
    DockerSchema2List,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
}

impl ListKind {
    pub fn media_type(self) -> &'static str {
        match self {
            ListKind::DockerSchema2List => DOCKER_V2_LIST_MEDIA_TYPE,
            ListKind::OciIndex => OCI_INDEX_MEDIA_TYPE,
        }
    }
}

/// One entry of a manifest list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The digest exactly as written. c/image does not validate it when
    /// parsing, only when the instance is fetched; see [`ListEntry::digest`].
    pub digest_string: String,
    pub media_type: String,
    pub size: i64,
    /// `None` only for an OCI index entry without `platform` (or with
    /// `null`); a schema2 list entry always has one, possibly empty.
    pub platform: Option<Platform>,
    /// OCI index entries only; empty for schema2 lists.
    pub annotations: BTreeMap<String, String>,
}

impl ListEntry {
    /// The entry's digest, validated as go-digest does when c/image fetches
    /// the instance.
    pub fn digest(&self) -> Result<Digest, ManifestError> {
        Digest::parse(&self.digest_string).map_err(|e| {
            ManifestError(format!(
                "invalid instance digest {:?}: {e}",
                self.digest_string
            ))
        })
    }

    /// `instanceIsZstd`.
    pub fn is_zstd(&self) -> bool {
        self.annotations
            .get(ANNOTATION_COMPRESSION_ZSTD)
            .is_some_and(|v| v == "true")
    }

    /// `instanceHasSentinel`.
    pub fn has_zstd_chunked_sentinel(&self) -> bool {
        self.annotations
            .get(ANNOTATION_ZSTD_CHUNKED_SENTINEL)
            .is_some_and(|v| v == "true")
    }
}

/// A parsed Docker schema2 manifest list or OCI image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestList {
    pub kind: ListKind,
    /// In document order, which is the final tie-break of selection.
    pub entries: Vec<ListEntry>,
}

impl ManifestList {
    /// `manifest.ListFromBlob`: parses `bytes` as the list format that
    /// `media_type` (the HTTP `Content-Type`, normalized as c/image does)
    /// names. Single-image types are refused with c/image's message.
    /// Decoding errors read `unmarshaling OCI1Index: <json error>`; c/image
    /// also quotes the whole document there, which is left out.
    pub fn parse(bytes: &[u8], media_type: &str) -> Result<ManifestList, ManifestError> {
        let kind = match normalized_mime_type(media_type) {
            DOCKER_V2_LIST_MEDIA_TYPE => ListKind::DockerSchema2List,
            OCI_INDEX_MEDIA_TYPE => ListKind::OciIndex,
            _ => {
                return Err(ManifestError(
                    "Treating single images as manifest lists is not implemented".into(),
                ));
            }
        };
        let doc = strictjson::parse(bytes).map_err(|e| {
            ManifestError(format!(
                "unmarshaling {}: {}",
                kind_go_name(kind),
                e.message
            ))
        })?;
        let entries = match kind {
            ListKind::DockerSchema2List => parse_schema2_list(&doc),
            ListKind::OciIndex => parse_oci_index(&doc),
        }
        .map_err(|e| ManifestError(format!("unmarshaling {}: {}", kind_go_name(kind), e)))?;
        validate_unambiguous_list(&doc, kind)?;
        Ok(ManifestList { kind, entries })
    }

    /// The instance c/image pulls for a node that wants `wanted` (as from
    /// [`wanted_platforms`], most preferred first), with zstd instances
    /// preferred as CRI-O does (it never sets `PreferGzipInstances`).
    ///
    /// Schema2 list: for each wanted platform in order, the first matching
    /// entry. OCI index: the best candidate by wanted-platform rank (entries
    /// without a platform are candidates of the lowest rank), then zstd, then
    /// the zstd:chunked sentinel, then list order.
    pub fn choose_instance(&self, wanted: &[Platform]) -> Result<Digest, ManifestError> {
        self.choose_entry(wanted, true)?.digest()
    }

    /// [`ManifestList::choose_instance`] for one node platform.
    pub fn choose_for_platform(&self, platform: &Platform) -> Result<Digest, ManifestError> {
        self.choose_instance(&wanted_platforms(platform))
    }

    /// The selected entry. `sentinel_rule` enables the zstd:chunked sentinel
    /// tie-break that current c/image applies and older releases lack.
    fn choose_entry(
        &self,
        wanted: &[Platform],
        sentinel_rule: bool,
    ) -> Result<&ListEntry, ManifestError> {
        let first = wanted
            .first()
            .ok_or_else(|| ManifestError("no wanted platforms given".into()))?;
        let found = match self.kind {
            ListKind::DockerSchema2List => wanted.iter().find_map(|w| {
                self.entries
                    .iter()
                    .find(|e| e.platform.as_ref().is_some_and(|p| matches_platform(p, w)))
            }),
            ListKind::OciIndex => self.best_oci_candidate(wanted, sentinel_rule),
        };
        found.ok_or_else(|| {
            let what = match self.kind {
                ListKind::DockerSchema2List => "manifest list",
                ListKind::OciIndex => "image index",
            };
            ManifestError(format!(
                "no image found in {what} for architecture {}, variant {}, OS {}",
                go_quote(&first.architecture),
                go_quote(first.variant_str()),
                go_quote(&first.os)
            ))
        })
    }

    /// `OCI1IndexPublic.chooseInstance` with `preferGzip` unset.
    fn best_oci_candidate(&self, wanted: &[Platform], sentinel_rule: bool) -> Option<&ListEntry> {
        // (platform rank, not zstd, no sentinel, position): lowest is best.
        type Key = (usize, bool, bool, usize);
        let mut best: Option<(Key, &ListEntry)> = None;
        for (position, entry) in self.entries.iter().enumerate() {
            let rank = match &entry.platform {
                None => usize::MAX,
                Some(p) => match wanted.iter().position(|w| matches_platform(p, w)) {
                    Some(i) => i,
                    None => continue,
                },
            };
            let sentinel = sentinel_rule && entry.has_zstd_chunked_sentinel();
            let key = (rank, !entry.is_zstd(), !sentinel, position);
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, entry));
            }
        }
        best.map(|(_, e)| e)
    }
}

/// Every instance that a node of any of `platforms` could pull from `list`:
/// the union, in first-seen order and without duplicates, of the choices for
/// every variant the node's CPU might report (a node platform without a
/// variant is taken as each of its architecture's known variants and as none,
/// since CRI-O detects the variant from the CPU) and for the current and
/// older c/image tie-break rules.
///
/// Platforms and entries of `unknown` OS or architecture (attestation
/// manifests) are ignored. Node platforms that can select nothing are
/// skipped, since such a node fails the pull rather than running an
/// unverified image; if no platform selects anything, the error is c/image's
/// `no image found …` for the first one.
pub fn instances_for_platforms(
    list: &ManifestList,
    platforms: &[Platform],
) -> Result<Vec<Digest>, ManifestError> {
    let filtered = ManifestList {
        kind: list.kind,
        entries: list
            .entries
            .iter()
            .filter(|e| !e.platform.as_ref().is_some_and(Platform::is_unknown))
            .cloned()
            .collect(),
    };
    let mut out: Vec<Digest> = Vec::new();
    let mut first_error: Option<ManifestError> = None;
    for platform in platforms.iter().filter(|p| !p.is_unknown()) {
        let mut node_views = vec![platform.clone()];
        if platform.variant.is_none()
            && let Some(all) = compatible_variants(&platform.architecture)
        {
            node_views.extend(
                all.iter()
                    .map(|v| Platform::new(&platform.os, &platform.architecture, Some(v))),
            );
        }
        for view in &node_views {
            let wanted = wanted_platforms(view);
            for sentinel_rule in [true, false] {
                match filtered.choose_entry(&wanted, sentinel_rule) {
                    Ok(entry) => {
                        let d = entry.digest()?;
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
    }
    if out.is_empty() {
        return Err(first_error.unwrap_or_else(|| {
            ManifestError("no node platforms to select an instance for".into())
        }));
    }
    Ok(out)
}

fn kind_go_name(kind: ListKind) -> &'static str {
    match kind {
        ListKind::DockerSchema2List => "Schema2List",
        ListKind::OciIndex => "OCI1Index",
    }
}

/// Go's `%q` for a string.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---- Go encoding/json decoding of the list documents ----

static JSON_NULL: JsonValue = JsonValue::Null;

/// Go's `foldName`: the key under which `encoding/json` matches a JSON key to
/// a struct field. ASCII letters fold to upper case; the two non-ASCII runes
/// whose case-fold orbit contains an ASCII letter fold to it.
fn go_fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{017f}' => 'S',
            '\u{212a}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A JSON object read as Go decodes it into a struct.
struct GoObject<'a> {
    entries: &'a [(String, JsonValue)],
    path: String,
}

impl<'a> GoObject<'a> {
    /// A struct value: an object, or `null` (no fields set). Anything else is
    /// a type error, as in Go.
    fn new(value: &'a JsonValue, path: &str, go_type: &str) -> Result<GoObject<'a>, String> {
        match value {
            JsonValue::Object(entries) => Ok(GoObject {
                entries,
                path: path.to_string(),
            }),
            JsonValue::Null => Ok(GoObject {
                entries: &[],
                path: path.to_string(),
            }),
            other => Err(strictjson::cannot_unmarshal(other, path, go_type).message),
        }
    }

    /// The value decoded into the field tagged `name`: the last key that
    /// folds to it. `None` if absent or `null` (the field keeps its zero value).
    fn field(&self, name: &str) -> Option<&'a JsonValue> {
        let folded = go_fold(name);
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name || go_fold(k) == folded)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, JsonValue::Null))
    }

    fn path_of(&self, name: &str) -> String {
        strictjson::child_path(&self.path, name)
    }

    fn string(&self, name: &str) -> Result<String, String> {
        match self.field(name) {
            None => Ok(String::new()),
            Some(v) => strictjson::go_string(v, &self.path_of(name)).map_err(|e| e.message),
        }
    }

    fn string_list(&self, name: &str) -> Result<(), String> {
        if let Some(v) = self.field(name) {
            strictjson::go_string_list(v, &self.path_of(name)).map_err(|e| e.message)?;
        }
        Ok(())
    }

    fn int(&self, name: &str, go_type: &str) -> Result<i64, String> {
        match self.field(name) {
            None => Ok(0),
            Some(JsonValue::Number(n)) => {
                let text = n.to_string();
                // Go refuses fractions and exponents for integer fields.
                text.parse::<i64>().map_err(|_| {
                    format!("json: cannot unmarshal number {text} into Go value of type {go_type}")
                })
            }
            Some(other) => {
                Err(strictjson::cannot_unmarshal(other, &self.path_of(name), go_type).message)
            }
        }
    }

    /// A `map[string]string`: keys exact, the last repeated key wins, `null`
    /// values are `""`.
    fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        let path = self.path_of(name);
        match self.field(name) {
            None => {}
            Some(JsonValue::Object(entries)) => {
                for (k, v) in entries {
                    let s = strictjson::go_string(v, &strictjson::child_path(&path, k))
                        .map_err(|e| e.message)?;
                    out.insert(k.clone(), s);
                }
            }
            Some(other) => {
                return Err(
                    strictjson::cannot_unmarshal(other, &path, "map[string]string").message,
                );
            }
        }
        Ok(out)
    }

    /// A `[]byte`: standard base64 with padding.
    fn bytes(&self, name: &str) -> Result<(), String> {
        if let Some(v) = self.field(name) {
            let s = strictjson::go_string(v, &self.path_of(name)).map_err(|e| e.message)?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| format!("illegal base64 data: {e}"))?;
        }
        Ok(())
    }

    fn array(&self, name: &str, go_type: &str) -> Result<&'a [JsonValue], String> {
        match self.field(name) {
            None => Ok(&[]),
            Some(JsonValue::Array(items)) => Ok(items),
            Some(other) => {
                Err(strictjson::cannot_unmarshal(other, &self.path_of(name), go_type).message)
            }
        }
    }
}

/// `Schema2ListPublicFromManifest`'s `json.Unmarshal`.
fn parse_schema2_list(doc: &JsonValue) -> Result<Vec<ListEntry>, String> {
    let top = GoObject::new(doc, "$", "manifest.Schema2ListPublic")?;
    top.int("schemaVersion", "int")?;
    top.string("mediaType")?;
    let mut entries = Vec::new();
    for (i, item) in top
        .array("manifests", "[]manifest.Schema2ManifestDescriptor")?
        .iter()
        .enumerate()
    {
        let path = strictjson::index_path(&top.path_of("manifests"), i);
        let d = GoObject::new(item, &path, "manifest.Schema2ManifestDescriptor")?;
        let media_type = d.string("mediaType")?;
        let size = d.int("size", "int64")?;
        let digest = d.string("digest")?;
        d.string_list("urls")?;
        // A struct, not a pointer: absent or null is the empty platform,
        // which matches no wanted platform.
        let p = match d.field("platform") {
            Some(v) => GoObject::new(v, &d.path_of("platform"), "manifest.Schema2PlatformSpec")?,
            None => GoObject::new(&JSON_NULL, &d.path_of("platform"), "")?,
        };
        let platform = parse_platform_fields(&p)?;
        p.string_list("features")?;
        entries.push(ListEntry {
            digest_string: digest,
            media_type,
            size,
            platform: Some(platform),
            annotations: BTreeMap::new(),
        });
    }
    Ok(entries)
}

/// `OCI1IndexPublicFromManifest`'s `json.Unmarshal` into `imgspecv1.Index`.
fn parse_oci_index(doc: &JsonValue) -> Result<Vec<ListEntry>, String> {
    let top = GoObject::new(doc, "$", "manifest.OCI1IndexPublic")?;
    top.int("schemaVersion", "int")?;
    top.string("mediaType")?;
    top.string("artifactType")?;
    top.string_map("annotations")?;
    if let Some(subject) = top.field("subject") {
        parse_oci_descriptor(subject, &top.path_of("subject"))?;
    }
    top.array("manifests", "[]v1.Descriptor")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_oci_descriptor(item, &strictjson::index_path(&top.path_of("manifests"), i))
        })
        .collect()
}

fn parse_oci_descriptor(value: &JsonValue, path: &str) -> Result<ListEntry, String> {
    let d = GoObject::new(value, path, "v1.Descriptor")?;
    let media_type = d.string("mediaType")?;
    let digest = d.string("digest")?;
    let size = d.int("size", "int64")?;
    d.string_list("urls")?;
    let annotations = d.string_map("annotations")?;
    d.bytes("data")?;
    d.string("artifactType")?;
    // A pointer: absent or null means no platform.
    let platform = match d.field("platform") {
        None => None,
        Some(v) => Some(parse_platform_fields(&GoObject::new(
            v,
            &d.path_of("platform"),
            "v1.Platform",
        )?)?),
    };
    Ok(ListEntry {
        digest_string: digest,
        media_type,
        size,
        platform,
        annotations,
    })
}

fn parse_platform_fields(p: &GoObject<'_>) -> Result<Platform, String> {
    let architecture = p.string("architecture")?;
    let os = p.string("os")?;
    p.string("os.version")?;
    p.string_list("os.features")?;
    let variant = p.string("variant")?;
    Ok(Platform::new(&os, &architecture, Some(&variant)))
}

/// `ValidateUnambiguousManifestFormat(manifest, <list type>, AllowedFieldManifests)`:
/// a list must not also carry the essential fields of single-image formats.
fn validate_unambiguous_list(doc: &JsonValue, kind: ListKind) -> Result<(), ManifestError> {
    let top = GoObject::new(doc, "$", "struct").map_err(ManifestError)?;
    let unexpected: Vec<&str> = ["config", "fsLayers", "history", "layers"]
        .into_iter()
        .filter(|f| top.field(f).is_some())
        .collect();
    if unexpected.is_empty() {
        return Ok(());
    }
    let go_slice = unexpected
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Err(ManifestError(format!(
        "rejecting ambiguous manifest, unexpected fields []string{{{go_slice}}} in supposedly {}",
        kind.media_type()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn schema2(entries: &[(&str, char)]) -> ManifestList {
        let items: Vec<String> = entries
            .iter()
            .map(|(plat, c)| {
                let pl = p(plat);
                let variant = pl
                    .variant
                    .as_ref()
                    .map(|v| format!(",\"variant\":\"{v}\""))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{DOCKER_V2_SCHEMA2_MEDIA_TYPE}","size":1,"digest":"{}","platform":{{"architecture":"{}","os":"{}"{variant}}}}}"#,
                    d(*c),
                    pl.architecture,
                    pl.os
                )
            })
            .collect();
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_V2_LIST_MEDIA_TYPE}","manifests":[{}]}}"#,
            items.join(",")
        );
        ManifestList::parse(doc.as_bytes(), DOCKER_V2_LIST_MEDIA_TYPE).unwrap()
    }

    fn oci(entries: &[String]) -> ManifestList {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX_MEDIA_TYPE}","manifests":[{}]}}"#,
            entries.join(",")
        );
        ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap()
    }

    fn oci_entry(platform: Option<&str>, c: char, zstd: bool) -> String {
        let plat = platform
            .map(|s| {
                let pl = p(s);
                let variant = pl
                    .variant
                    .as_ref()
                    .map(|v| format!(",\"variant\":\"{v}\""))
                    .unwrap_or_default();
                format!(
                    r#","platform":{{"architecture":"{}","os":"{}"{variant}}}"#,
                    pl.architecture, pl.os
                )
            })
            .unwrap_or_default();
        let ann = if zstd {
            format!(r#","annotations":{{"{ANNOTATION_COMPRESSION_ZSTD}":"true"}}"#)
        } else {
            String::new()
        };
        format!(
            r#"{{"mediaType":"{OCI_MANIFEST_MEDIA_TYPE}","digest":"{}","size":1{plat}{ann}}}"#,
            d(c)
        )
    }

    fn chosen(list: &ManifestList, platform: &str) -> String {
        list.choose_for_platform(&p(platform)).unwrap().to_string()
    }

    #[test]
    fn platform_parse_and_display() {
        assert_eq!(p("linux/amd64"), Platform::new("linux", "amd64", None));
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64", ""] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let cur = Platform::current();
        assert!(!cur.os.is_empty() && !cur.architecture.is_empty());
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(cur, p("linux/amd64"));
    }

    #[test]
    fn wanted_platforms_follow_c_image() {
        let names = |w: Vec<Platform>| w.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(names(wanted_platforms(&p("linux/amd64"))), ["linux/amd64"]);
        assert_eq!(
            names(wanted_platforms(&p("linux/arm64"))),
            ["linux/arm64", "linux/arm64/v8"]
        );
        assert_eq!(
            names(wanted_platforms(&p("linux/arm64/v8"))),
            ["linux/arm64/v8", "linux/arm64"]
        );
        assert_eq!(
            names(wanted_platforms(&p("linux/arm/v8"))),
            [
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5",
                "linux/arm"
            ]
        );
        assert_eq!(
            names(wanted_platforms(&p("linux/arm/v6"))),
            ["linux/arm/v6", "linux/arm/v5", "linux/arm"]
        );
        assert_eq!(
            names(wanted_platforms(&p("linux/arm"))),
            [
                "linux/arm",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        // A variant c/image does not know: itself, then none.
        assert_eq!(
            names(wanted_platforms(&p("linux/riscv64/rva22"))),
            ["linux/riscv64/rva22", "linux/riscv64"]
        );
    }

    #[test]
    fn cpuinfo_variants() {
        assert_eq!(
            arm_variant_from_cpuinfo("processor\t: 0\nCPU architecture: 8\n").as_deref(),
            Some("v8")
        );
        assert_eq!(
            arm_variant_from_cpuinfo(
                "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n"
            )
            .as_deref(),
            Some("v6")
        );
        assert_eq!(
            arm_variant_from_cpuinfo(
                "model name\t: ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n"
            )
            .as_deref(),
            Some("v7")
        );
        assert_eq!(
            arm_variant_from_cpuinfo("CPU architecture: 5TE\n").as_deref(),
            Some("v5")
        );
        assert_eq!(arm_variant_from_cpuinfo("flags: x\n"), None);
    }

    #[test]
    fn schema2_list_first_match_per_wanted_platform() {
        let list = schema2(&[
            ("linux/amd64", 'a'),
            ("linux/arm64", 'b'),
            ("linux/arm64/v8", 'c'),
            ("linux/amd64", 'd'),
            ("linux/arm/v6", 'e'),
            ("linux/arm/v7", 'f'),
        ]);
        assert_eq!(list.kind, ListKind::DockerSchema2List);
        assert_eq!(chosen(&list, "linux/amd64"), d('a'));
        // No variant wanted first: the plain arm64 entry.
        assert_eq!(chosen(&list, "linux/arm64"), d('b'));
        // A v8 CPU prefers the v8 entry although it comes later.
        assert_eq!(chosen(&list, "linux/arm64/v8"), d('c'));
        assert_eq!(chosen(&list, "linux/arm/v7"), d('f'));
        assert_eq!(chosen(&list, "linux/arm/v8"), d('f'));
        assert_eq!(chosen(&list, "linux/arm/v6"), d('e'));
        // An arm node without variant: none, then v8 … v5: v7 before v6.
        assert_eq!(chosen(&list, "linux/arm"), d('f'));
        let err = list.choose_for_platform(&p("linux/s390x")).unwrap_err();
        assert_eq!(
            err.0,
            r#"no image found in manifest list for architecture "s390x", variant "", OS "linux""#
        );
        let err = list.choose_for_platform(&p("linux/arm/v5")).unwrap_err();
        assert_eq!(
            err.0,
            r#"no image found in manifest list for architecture "arm", variant "v5", OS "linux""#
        );
    }

    #[test]
    fn oci_index_prefers_platform_rank_then_zstd_then_order() {
        let list = oci(&[
            oci_entry(Some("linux/amd64"), 'a', false),
            oci_entry(Some("linux/amd64"), 'b', true),
            oci_entry(Some("linux/arm64"), 'c', false),
            oci_entry(Some("linux/arm64/v8"), 'd', true),
            oci_entry(None, 'e', false),
        ]);
        assert_eq!(list.kind, ListKind::OciIndex);
        // zstd preferred among equally ranked entries.
        assert_eq!(chosen(&list, "linux/amd64"), d('b'));
        // Rank beats zstd: arm64 (rank 0) over arm64/v8 zstd (rank 1).
        assert_eq!(chosen(&list, "linux/arm64"), d('c'));
        assert_eq!(chosen(&list, "linux/arm64/v8"), d('d'));
        // No platform match: the platform-less entry is still a candidate.
        assert_eq!(chosen(&list, "linux/s390x"), d('e'));
    }

    #[test]
    fn oci_index_platformless_entries() {
        let list = oci(&[oci_entry(None, 'a', false), oci_entry(None, 'b', true)]);
        assert_eq!(chosen(&list, "linux/amd64"), d('b'));
        let list = oci(&[oci_entry(None, 'a', false), oci_entry(None, 'b', false)]);
        assert_eq!(chosen(&list, "linux/ppc64le"), d('a'));
        // "platform": null is no platform, like absence.
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","platform":null}}]}}"#,
            d('f')
        );
        let list = ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap();
        assert_eq!(list.entries[0].platform, None);
        assert_eq!(chosen(&list, "linux/amd64"), d('f'));
        let list = oci(&[oci_entry(Some("linux/arm64"), 'a', false)]);
        assert_eq!(
            list.choose_for_platform(&p("linux/amd64")).unwrap_err().0,
            r#"no image found in image index for architecture "amd64", variant "", OS "linux""#
        );
    }

    #[test]
    fn oci_index_sentinel_tie_break() {
        let sentinel = format!(
            r#"{{"digest":"{}","platform":{{"architecture":"amd64","os":"linux"}},"annotations":{{"{ANNOTATION_COMPRESSION_ZSTD}":"true","{ANNOTATION_ZSTD_CHUNKED_SENTINEL}":"true"}}}}"#,
            d('2')
        );
        let list = oci(&[oci_entry(Some("linux/amd64"), '1', true), sentinel]);
        assert_eq!(chosen(&list, "linux/amd64"), d('2'));
        // Older c/image picks list order; the webhook verifies both.
        assert_eq!(
            instances_for_platforms(&list, &[p("linux/amd64")]).unwrap(),
            vec![
                Digest::parse(&d('2')).unwrap(),
                Digest::parse(&d('1')).unwrap()
            ]
        );
    }

    #[test]
    fn go_decoding_rules() {
        // Keys fold case-insensitively and the last one wins.
        let doc = format!(
            r#"{{"manifests":[{{"digest":"{}","platform":{{"architecture":"amd64","os":"linux"}}}}],
               "Manifests":[{{"Digest":"{}","PLATFORM":{{"Architecture":"amd64","OS":"linux"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let list = ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap();
        assert_eq!(list.entries.len(), 1);
        assert_eq!(chosen(&list, "linux/amd64"), d('b'));
        // Kelvin sign folds to K, long s to S.
        assert_eq!(go_fold("\u{212a}ey\u{017f}"), "KEYS");
        // Unknown fields are ignored.
        let doc = format!(
            r#"{{"x":{{"y":1}},"manifests":[{{"digest":"{}","foo":[]}}]}}"#,
            d('a')
        );
        assert!(ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).is_ok());
        // Wrong types fail the document, even in fields selection ignores.
        for bad in [
            r#"{"manifests":{}}"#,
            r#"{"manifests":[{"size":"1"}]}"#,
            r#"{"manifests":[{"size":1.5}]}"#,
            r#"{"manifests":[{"urls":"x"}]}"#,
            r#"{"manifests":[{"data":"!!"}]}"#,
            r#"{"manifests":[{"annotations":{"a":1}}]}"#,
            r#"{"manifests":[{"platform":{"os.features":"x"}}]}"#,
            r#"{"schemaVersion":"2","manifests":[]}"#,
            r#"[]"#,
            r#"{"manifests":[1]}"#,
            "not json",
        ] {
            let e = ManifestList::parse(bad.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap_err();
            assert!(e.0.starts_with("unmarshaling OCI1Index: "), "{bad}: {e}");
        }
        let e = ManifestList::parse(
            br#"{"manifests":[{"platform":5}]}"#,
            DOCKER_V2_LIST_MEDIA_TYPE,
        )
        .unwrap_err();
        assert!(e.0.starts_with("unmarshaling Schema2List: "), "{e}");
        // A schema2 entry without platform has the empty platform: no match.
        let doc = format!(r#"{{"manifests":[{{"digest":"{}"}}]}}"#, d('a'));
        let list = ManifestList::parse(doc.as_bytes(), DOCKER_V2_LIST_MEDIA_TYPE).unwrap();
        assert_eq!(list.entries[0].platform, Some(Platform::new("", "", None)));
        assert!(list.choose_for_platform(&p("linux/amd64")).is_err());
        // null document: an empty list, as Go leaves the value untouched.
        let list = ManifestList::parse(b"null", OCI_INDEX_MEDIA_TYPE).unwrap();
        assert!(list.entries.is_empty());
    }

    #[test]
    fn media_types_and_ambiguity() {
        assert_eq!(
            ManifestList::parse(b"{}", OCI_MANIFEST_MEDIA_TYPE)
                .unwrap_err()
                .0,
            "Treating single images as manifest lists is not implemented"
        );
        assert!(ManifestList::parse(b"{}", "text/plain").is_err());
        assert!(is_list_media_type(OCI_INDEX_MEDIA_TYPE));
        assert!(is_list_media_type(DOCKER_V2_LIST_MEDIA_TYPE));
        assert!(!is_list_media_type(OCI_MANIFEST_MEDIA_TYPE));
        assert!(!is_list_media_type(""));
        assert_eq!(
            normalized_mime_type("application/json"),
            DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE
        );
        let e = ManifestList::parse(
            br#"{"manifests":[],"config":{},"Layers":[],"history":null}"#,
            OCI_INDEX_MEDIA_TYPE,
        )
        .unwrap_err();
        assert_eq!(
            e.0,
            "rejecting ambiguous manifest, unexpected fields []string{\"config\", \"layers\"} in supposedly application/vnd.oci.image.index.v1+json"
        );
    }

    #[test]
    fn invalid_instance_digest_fails_when_selected() {
        let doc = r#"{"manifests":[{"digest":"sha256:abc","platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let list = ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap();
        assert!(list.choose_for_platform(&p("linux/amd64")).is_err());
        assert!(instances_for_platforms(&list, &[p("linux/amd64")]).is_err());
    }

    #[test]
    fn instances_for_node_platforms() {
        let doc = format!(
            r#"{{"manifests":[
              {},{},{},{},
              {{"digest":"{}","platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
            oci_entry(Some("linux/amd64"), 'a', false),
            oci_entry(Some("linux/amd64"), 'b', true),
            oci_entry(Some("linux/arm64"), 'c', false),
            oci_entry(Some("linux/arm64/v8"), 'd', false),
            d('9')
        );
        let list = ManifestList::parse(doc.as_bytes(), OCI_INDEX_MEDIA_TYPE).unwrap();
        let digests = |ps: &[&str]| {
            instances_for_platforms(&list, &ps.iter().map(|s| p(s)).collect::<Vec<_>>())
                .map(|v| v.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(digests(&["linux/amd64"]).unwrap(), [d('b')]);
        // An arm64 node may report no variant or v8: both choices count.
        assert_eq!(digests(&["linux/arm64"]).unwrap(), [d('c'), d('d')]);
        assert_eq!(
            digests(&["linux/amd64", "linux/arm64", "linux/amd64"]).unwrap(),
            [d('b'), d('c'), d('d')]
        );
        // A platform that selects nothing is skipped; unknown/unknown never counts.
        assert_eq!(digests(&["linux/s390x", "linux/amd64"]).unwrap(), [d('b')]);
        assert_eq!(
            digests(&["linux/s390x"]).unwrap_err().0,
            r#"no image found in image index for architecture "s390x", variant "", OS "linux""#
        );
        assert!(digests(&["unknown/unknown"]).is_err());
        assert!(digests(&[]).is_err());
        // Schema2 list: the same union.
        let list = schema2(&[("linux/arm64/v8", '7'), ("linux/arm64", '8')]);
        let got = instances_for_platforms(&list, &[p("linux/arm64")]).unwrap();
        assert_eq!(
            got.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            [d('8'), d('7')]
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
    }
}
