//! Which images an admitted object runs, and where each one is written in
//! it (a JSON pointer, so the mutating endpoint can pin it).
//!
//! Pods carry their spec at `/spec`; the workload kinds carry a pod template
//! (`/spec/template/spec`, CronJob one level deeper). Every container kind is
//! covered, and image volumes (`volumes[].image.reference`), so no field a
//! node pulls from is left unchecked (DESIGN decision 7).

use serde_json::Value;

/// The kind of field an image was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageField {
    Container,
    InitContainer,
    EphemeralContainer,
    ImageVolume,
}

impl ImageField {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageField::Container => "container",
            ImageField::InitContainer => "initContainer",
            ImageField::EphemeralContainer => "ephemeralContainer",
            ImageField::ImageVolume => "imageVolume",
        }
    }
}

/// One use of an image in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The image string exactly as written.
    pub image: String,
    /// RFC 6901 pointer to the string (for JSON Patch).
    pub pointer: String,
    /// The container or volume name.
    pub name: String,
    pub field: ImageField,
}

/// Where the pod spec lives in an object of `kind` (group-less kind name),
/// or `None` for kinds that run no pods.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The workload kinds whose pod templates are checked, with their API group.
pub const WORKLOAD_KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("", "ReplicationController"),
];

/// Every image use in `object` of `kind`. A kind that runs no pods yields
/// nothing; a malformed spec (an image that is not a string, a container
/// list that is not a list) is an error, so that nothing is silently skipped.
pub fn images_of(kind: &str, object: &Value) -> Result<Vec<ImageUse>, String> {
    let Some(spec_pointer) = pod_spec_pointer(kind) else {
        return Ok(Vec::new());
    };
    let Some(spec) = object.pointer(spec_pointer) else {
        // A template-less workload (or an empty Pod) runs nothing.
        return Ok(Vec::new());
    };
    let mut uses = Vec::new();
    for (key, field) in [
        ("initContainers", ImageField::InitContainer),
        ("containers", ImageField::Container),
        ("ephemeralContainers", ImageField::EphemeralContainer),
    ] {
        for (i, container) in list(spec, key, spec_pointer)?.iter().enumerate() {
            let pointer = format!("{spec_pointer}/{key}/{i}/image");
            match container.get("image") {
                None | Some(Value::Null) => {} // the API server rejects these; nothing to pull
                Some(Value::String(image)) => uses.push(ImageUse {
                    image: image.clone(),
                    pointer,
                    name: name_of(container),
                    field,
                }),
                Some(_) => return Err(format!("{pointer}: image must be a string")),
            }
        }
    }
    for (i, volume) in list(spec, "volumes", spec_pointer)?.iter().enumerate() {
        let Some(source) = volume.get("image") else {
            continue;
        };
        let pointer = format!("{spec_pointer}/volumes/{i}/image/reference");
        match source.get("reference") {
            None | Some(Value::Null) => {}
            Some(Value::String(image)) => uses.push(ImageUse {
                image: image.clone(),
                pointer,
                name: name_of(volume),
                field: ImageField::ImageVolume,
            }),
            Some(_) => return Err(format!("{pointer}: image reference must be a string")),
        }
    }
    Ok(uses)
}

fn list<'a>(spec: &'a Value, key: &str, spec_pointer: &str) -> Result<&'a [Value], String> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("{spec_pointer}/{key}: must be a list")),
    }
}

fn name_of(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The distinct image strings of `uses`, in first-seen order: the same
/// image in several containers is verified once.
pub fn distinct_images(uses: &[ImageUse]) -> Vec<String> {
    let mut seen = Vec::<String>::new();
    for u in uses {
        if !seen.contains(&u.image) {
            seen.push(u.image.clone());
        }
    }
    seen
}

/// Whether an UPDATE introduces any image the old object did not already
/// run. If not, it is admitted without work (scaling, label changes).
pub fn introduces_new_images(old: &[ImageUse], new: &[ImageUse]) -> bool {
    new.iter().any(|n| !old.iter().any(|o| o.image == n.image))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/admission/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn every_workload_kind() {
        for (file, kind, image) in [
            ("pod.json", "Pod", "registry.example.com/team/app:v1"),
            (
                "deployment.json",
                "Deployment",
                "registry.example.com/team/web:v1",
            ),
            (
                "replicaset.json",
                "ReplicaSet",
                "registry.example.com/team/web:v1",
            ),
            (
                "statefulset.json",
                "StatefulSet",
                "registry.example.com/team/web:v1",
            ),
            (
                "daemonset.json",
                "DaemonSet",
                "registry.example.com/team/web:v1",
            ),
            (
                "replicationcontroller.json",
                "ReplicationController",
                "registry.example.com/team/web:v1",
            ),
            ("job.json", "Job", "registry.example.com/team/job:v1"),
            (
                "cronjob.json",
                "CronJob",
                "registry.example.com/team/cron:v1",
            ),
        ] {
            let obj = fixture(file);
            let uses = images_of(kind, &obj).unwrap();
            assert_eq!(uses.len(), 1, "{file}");
            assert_eq!(uses[0].image, image, "{file}");
            assert_eq!(
                obj.pointer(&uses[0].pointer).and_then(Value::as_str),
                Some(image)
            );
        }
    }

    #[test]
    fn every_container_kind_and_image_volumes() {
        let obj = fixture("pod-all-kinds.json");
        let uses = images_of("Pod", &obj).unwrap();
        let got: Vec<_> = uses
            .iter()
            .map(|u| (u.field, u.name.as_str(), u.pointer.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    ImageField::InitContainer,
                    "init",
                    "/spec/initContainers/0/image"
                ),
                (ImageField::Container, "app", "/spec/containers/0/image"),
                (ImageField::Container, "sidecar", "/spec/containers/1/image"),
                (
                    ImageField::EphemeralContainer,
                    "debug",
                    "/spec/ephemeralContainers/0/image"
                ),
                (
                    ImageField::ImageVolume,
                    "data",
                    "/spec/volumes/0/image/reference"
                ),
            ]
        );
        assert_eq!(distinct_images(&uses).len(), 4, "app:v1 appears twice");
    }

    #[test]
    fn malformed_specs_are_errors() {
        let obj = serde_json::json!({"spec": {"containers": [{"name": "a", "image": 3}]}});
        assert!(
            images_of("Pod", &obj)
                .unwrap_err()
                .contains("/spec/containers/0/image")
        );
        let obj = serde_json::json!({"spec": {"containers": {"name": "a"}}});
        assert!(images_of("Pod", &obj).is_err());
        assert!(images_of("ConfigMap", &obj).unwrap().is_empty());
    }

    #[test]
    fn update_detection() {
        let a = images_of("Pod", &fixture("pod.json")).unwrap();
        let b = images_of("Pod", &fixture("pod-all-kinds.json")).unwrap();
        assert!(!introduces_new_images(&a, &a));
        assert!(introduces_new_images(&a, &b));
        assert!(!introduces_new_images(&b, &a));
    }
}
