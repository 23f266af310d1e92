//! The files of configMap, secret, downwardAPI and projected volumes, computed from objects
//! already fetched (upstream `MakePayload` of each plugin). Pure: the volume manager fetches.

use crate::{Result, VolumeError};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Secret,
};
use kubelet_core::envvars::{EnvSources, field_value, resource_value};
use std::collections::BTreeMap;

/// Upstream's default file mode for these volumes.
pub const DEFAULT_MODE: i32 = 0o644;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path -> contents.
pub type Payload = BTreeMap<String, FileProjection>;

/// Objects and tokens a volume needs, fetched beforehand. A missing key was never fetched;
/// `None` means the object does not exist.
#[derive(Debug, Default, Clone)]
pub struct Fetched {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// Service-account tokens by the index of their projected source.
    pub tokens: BTreeMap<usize, String>,
}

fn mode_of(item: Option<i32>, default: Option<i32>) -> u32 {
    // Only permission bits: validation already bounds them, this keeps a bad value harmless.
    (item.or(default).unwrap_or(DEFAULT_MODE) as u32) & 0o777
}

fn from_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    missing_key: &'static str,
) -> Result<Payload> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileProjection {
                        data: v.clone(),
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: mode_of(it.mode, default_mode),
                            },
                        );
                    }
                    None if optional => continue,
                    None => {
                        return Err(VolumeError::MissingKey {
                            message: missing_key,
                            key: it.key.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        m.insert(k.clone(), v.0.clone());
    }
    m
}

fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only on the server, but a static pod's source may carry it.
    for (k, v) in s.string_data.iter().flatten() {
        m.insert(k.clone(), v.clone().into_bytes());
    }
    m
}

/// A configMap volume or projection. `Err` is the FailedMount message.
pub fn config_map(
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    obj: Option<&ConfigMap>,
) -> Result<Payload> {
    match obj {
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::SourceNotFound {
            kind: "configmap",
            name: name.into(),
        }),
        Some(cm) => from_items(
            &config_map_data(cm),
            items,
            default_mode,
            optional,
            "configmap references non-existent config key",
        ),
    }
}

/// A secret volume or projection. `Err` is the FailedMount message.
pub fn secret(
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
    obj: Option<&Secret>,
) -> Result<Payload> {
    match obj {
        None if optional => Ok(Payload::new()),
        None => Err(VolumeError::SourceNotFound {
            kind: "secret",
            name: name.into(),
        }),
        Some(s) => from_items(
            &secret_data(s),
            items,
            default_mode,
            optional,
            "references non-existent secret key",
        ),
    }
}

/// Go's `%q` for the label and annotation files: printable text kept, the rest escaped.
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
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key="value"` lines in key order (upstream `fieldpath.FormatMap`).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A downwardAPI volume or projection.
pub fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    env: &EnvSources,
) -> Result<Payload> {
    let mut out = Payload::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                p => field_value(pod, p, env)?,
            }
        } else if let Some(r) = &it.resource_field_ref {
            let cname = r.container_name.as_deref().unwrap_or_default();
            let c = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == cname)
                .ok_or_else(|| VolumeError::ContainerNotFound(cname.into()))?;
            let divisor = r.divisor.as_ref().map(|q| q.0.as_str());
            resource_value(c, &r.resource, divisor, env)?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: mode_of(it.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// A projected volume: its sources merged, later ones winning on a clash as upstream.
pub fn projected(
    pod: &Pod,
    src: &ProjectedVolumeSource,
    fetched: &Fetched,
    env: &EnvSources,
) -> Result<Payload> {
    let mut out = Payload::new();
    let dm = src.default_mode;
    for (i, s) in src.sources.iter().flatten().enumerate() {
        let part = if let Some(c) = &s.config_map {
            let obj = fetched.config_maps.get(&c.name).cloned().flatten();
            config_map(
                &c.name,
                c.items.as_deref(),
                dm,
                c.optional == Some(true),
                obj.as_ref(),
            )?
        } else if let Some(c) = &s.secret {
            let obj = fetched.secrets.get(&c.name).cloned().flatten();
            secret(
                &c.name,
                c.items.as_deref(),
                dm,
                c.optional == Some(true),
                obj.as_ref(),
            )?
        } else if let Some(d) = &s.downward_api {
            downward_api(pod, d.items.as_deref().unwrap_or_default(), dm, env)?
        } else if let Some(t) = &s.service_account_token {
            let token = fetched.tokens.get(&i).ok_or(VolumeError::TokenNotFetched)?;
            // Tokens are not world-readable unless the user asked for it.
            [(
                t.path.clone(),
                FileProjection {
                    data: token.clone().into_bytes(),
                    mode: mode_of(None, dm),
                },
            )]
            .into()
        } else {
            continue;
        };
        out.extend(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ObjectFieldSelector, ResourceFieldSelector, ServiceAccountTokenProjection, VolumeProjection,
    };

    fn cm() -> ConfigMap {
        ConfigMap {
            data: Some([("a".into(), "1".into()), ("b".into(), "2".into())].into()),
            binary_data: Some([("bin".into(), ByteString(vec![0, 159]))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn config_map_all_keys_and_items() {
        let p = config_map("c", None, Some(0o600), false, Some(&cm())).unwrap_or_default();
        assert_eq!(p.len(), 3);
        assert_eq!(p["bin"].data, vec![0, 159]);
        assert_eq!(p["a"].mode, 0o600);
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o400),
        }];
        let p = config_map("c", Some(&items), None, false, Some(&cm())).unwrap_or_default();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/b.txt"]);
        assert_eq!(p["dir/b.txt"].mode, 0o400);
    }

    #[test]
    fn missing_objects_and_keys() {
        assert_eq!(
            config_map("c", None, None, false, None).map_err(|e| e.to_string()),
            Err("configmap \"c\" not found".into())
        );
        assert_eq!(
            config_map("c", None, None, true, None).ok(),
            Some(Payload::new())
        );
        let items = [KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
        }];
        assert_eq!(
            config_map("c", Some(&items), None, false, Some(&cm())).map_err(|e| e.to_string()),
            Err("configmap references non-existent config key: zz".into())
        );
        assert_eq!(
            secret("s", Some(&items), None, false, Some(&Secret::default()))
                .map_err(|e| e.to_string()),
            Err("references non-existent secret key: zz".into())
        );
        assert_eq!(
            secret("s", None, None, false, None).map_err(|e| e.to_string()),
            Err("secret \"s\" not found".into())
        );
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "labels": {"b": "x\"y", "a": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn downward_files() {
        let items: Vec<DownwardAPIVolumeFile> = vec![
            DownwardAPIVolumeFile {
                path: "labels".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "name".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                mode: Some(0o400),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "mem".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: Some("c".into()),
                    resource: "limits.memory".into(),
                    divisor: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                        "1Mi".into(),
                    )),
                }),
                ..Default::default()
            },
        ];
        let p = downward_api(&pod(), &items, None, &EnvSources::default()).unwrap_or_default();
        assert_eq!(p["labels"].data, b"a=\"1\"\nb=\"x\\\"y\"".to_vec());
        assert_eq!(p["name"].data, b"p".to_vec());
        assert_eq!(p["name"].mode, 0o400);
        assert_eq!(p["labels"].mode, 0o644);
        assert_eq!(p["mem"].data, b"64".to_vec());
    }

    #[test]
    fn projected_merges_sources() {
        let src = ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(k8s_openapi::api::core::v1::ConfigMapProjection {
                        name: "c".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
        };
        let mut f = Fetched::default();
        f.config_maps.insert("c".into(), Some(cm()));
        assert!(projected(&pod(), &src, &f, &EnvSources::default()).is_err());
        f.tokens.insert(1, "tok".into());
        let p = projected(&pod(), &src, &f, &EnvSources::default()).unwrap_or_default();
        assert_eq!(p["token"].data, b"tok".to_vec());
        assert_eq!(p["a"].mode, 0o440);
        assert_eq!(p.len(), 4);
    }
}
