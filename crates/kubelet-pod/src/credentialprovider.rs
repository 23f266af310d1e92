//! Registry credentials from `imagePullSecrets` (upstream `pkg/credentialprovider`): a
//! keyring built from dockerconfigjson/dockercfg secrets, matched against the image's
//! registry and repository path, most specific first.

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kubelet_cri::api::AuthConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// One credential and the registry location (host plus optional path) it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub location: String,
    pub auth: AuthConfig,
}

/// "https://index.docker.io/v1/" -> "docker.io", "my.reg:5000/team" -> "my.reg:5000/team".
fn normalize_location(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// The registry and repository of an image reference: "busybox" -> "docker.io/library/busybox".
pub fn image_location(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    };
    let first = name.split('/').next().unwrap_or("");
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        normalize_location(name)
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

fn entry_auth(server: &str, e: &Entry) -> Option<AuthConfig> {
    let (mut user, mut pass) = (e.username.clone(), e.password.clone());
    if user.is_empty() && !e.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e.auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        user = u.to_string();
        pass = p.to_string();
    }
    Some(AuthConfig {
        username: user,
        password: pass,
        server_address: server.to_string(),
        ..Default::default()
    })
}

/// Reads the registry credentials a secret carries; `Err` describes a malformed secret.
pub fn credentials_from_secret(secret: &Secret) -> Result<Vec<Credential>, CredentialError> {
    let data = secret.data.as_ref();
    let entries: BTreeMap<String, Entry> = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => {
            let raw = data
                .and_then(|d| d.get(".dockerconfigjson"))
                .ok_or(CredentialError::Missing(".dockerconfigjson"))?;
            serde_json::from_slice::<DockerConfigJson>(&raw.0)?.auths
        }
        Some("kubernetes.io/dockercfg") => {
            let raw = data
                .and_then(|d| d.get(".dockercfg"))
                .ok_or(CredentialError::Missing(".dockercfg"))?;
            serde_json::from_slice(&raw.0)?
        }
        other => return Err(CredentialError::WrongType(other.map(str::to_string))),
    };
    Ok(entries
        .iter()
        .filter_map(|(k, e)| {
            let location = normalize_location(k);
            let server = location.split('/').next().unwrap_or_default().to_string();
            entry_auth(&server, e).map(|auth| Credential { location, auth })
        })
        .collect())
}

/// The credentials that apply to `image`, the most specific location first.
pub fn lookup(creds: &[Credential], image: &str) -> Vec<AuthConfig> {
    let loc = image_location(image);
    let mut hits: Vec<&Credential> = creds
        .iter()
        .filter(|c| loc == c.location || loc.starts_with(&format!("{}/", c.location)))
        .collect();
    hits.sort_by_key(|c| std::cmp::Reverse(c.location.len()));
    hits.into_iter().map(|c| c.auth.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(kind.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn locations() {
        assert_eq!(image_location("busybox"), "docker.io/library/busybox");
        assert_eq!(image_location("busybox:1.36"), "docker.io/library/busybox");
        assert_eq!(image_location("team/app"), "docker.io/team/app");
        assert_eq!(
            image_location("127.0.0.1:5000/team/app:v1"),
            "127.0.0.1:5000/team/app"
        );
        assert_eq!(image_location("reg.example/a@sha256:00"), "reg.example/a");
        assert_eq!(
            normalize_location("https://index.docker.io/v1/"),
            "docker.io"
        );
    }

    #[test]
    fn dockerconfigjson_with_auth_field_and_path_precedence() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(
            r#"{{"auths": {{"reg.example": {{"auth": "{auth}"}}, "reg.example/team": {{"username": "bob", "password": "pw"}}}}}}"#
        );
        let creds = credentials_from_secret(&secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            &json,
        ))
        .unwrap();
        let hits = lookup(&creds, "reg.example/team/app:1");
        assert_eq!(hits.len(), 2);
        assert_eq!(
            (hits[0].username.as_str(), hits[0].password.as_str()),
            ("bob", "pw")
        );
        assert_eq!(
            (hits[1].username.as_str(), hits[1].password.as_str()),
            ("alice", "s3cret")
        );
        assert_eq!(hits[1].server_address, "reg.example");
        assert_eq!(lookup(&creds, "reg.example/other").len(), 1);
        assert!(lookup(&creds, "other.example/team/app").is_empty());
        assert!(lookup(&creds, "reg.example.evil/team/app").is_empty());
    }

    #[test]
    fn dockercfg_and_bad_secrets() {
        let creds = credentials_from_secret(&secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"https://index.docker.io/v1/": {"username": "u", "password": "p"}}"#,
        ))
        .unwrap();
        assert_eq!(lookup(&creds, "busybox")[0].username, "u");
        assert!(credentials_from_secret(&secret("Opaque", "x", "{}")).is_err());
        assert!(
            credentials_from_secret(&secret(
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                "not json"
            ))
            .is_err()
        );
        assert!(
            credentials_from_secret(&secret("kubernetes.io/dockerconfigjson", "wrong-key", "{}"))
                .is_err()
        );
    }
}

/// Why an object a pod refers to could not be had; the text is what the pod's event says.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Api(#[from] kubelet_api::ApiError),
    /// `kind` is the API's plural (secrets, configmaps).
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("runtimeclass.node.k8s.io {0:?} not found")]
    RuntimeClassNotFound(String),
    #[error("failed to lookup RuntimeClass {class}: {error}")]
    RuntimeClassLookup {
        class: String,
        error: kubelet_api::ApiError,
    },
    /// Standalone: no RuntimeClass can be looked up.
    #[error("failed to lookup RuntimeClass {0}: no API server")]
    NoRuntimeClasses(String),
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
    #[error("the token request came back without a token")]
    NoToken,
    /// Standalone: there is no API server to ask.
    #[error("no API server")]
    Standalone,
}

impl SourceError {
    pub fn secret_not_found(name: &str) -> Self {
        SourceError::NotFound {
            kind: "secrets",
            name: name.into(),
        }
    }
}

/// Why a pull secret gives no credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("missing {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("secret type {0:?} carries no registry credentials")]
    WrongType(Option<String>),
}

/// Where pods' Secrets, ConfigMaps and the Services for their environment come from: the
/// API server, or a fake in tests.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    async fn get(&self, namespace: &str, name: &str) -> Result<Secret, SourceError>;

    /// `Ok(None)` when it does not exist.
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        self.get(namespace, name).await.map(Some)
    }

    /// `Ok(None)` when it does not exist.
    async fn get_config_map(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, SourceError> {
        Ok(None)
    }

    /// Every Service, once they have been listed; `Err` until then. With `wait` false
    /// (static pods, which may be what runs the API server), whatever is known now.
    async fn services(
        &self,
        _wait: bool,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Service>, SourceError> {
        Ok(vec![])
    }

    /// The CRI handler of a RuntimeClass (upstream `runtimeclass.Manager`); the error is
    /// the event's wording.
    async fn runtime_handler(&self, class: &str) -> Result<String, SourceError> {
        Err(SourceError::NoRuntimeClasses(class.into()))
    }

    /// A token for the service account, bound to the pod (TokenRequest): the token and when
    /// it expires (Unix seconds).
    async fn request_token(
        &self,
        _namespace: &str,
        _service_account: &str,
        _audience: Option<&str>,
        _expiration_seconds: i64,
        _pod_name: &str,
        _pod_uid: &str,
    ) -> Result<(String, i64), SourceError> {
        Err(SourceError::Standalone)
    }
}

#[derive(Clone)]
pub struct ApiSecrets {
    pub api: Arc<dyn kubelet_api::ObjectSource>,
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
    /// Watched ConfigMaps and Secrets, read before asking the API server.
    pub objects: Option<kubelet_api::object_manager::ObjectManager>,
}

impl std::fmt::Debug for ApiSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSecrets").finish()
    }
}

#[async_trait::async_trait]
impl SecretSource for ApiSecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Secret, SourceError> {
        self.get_secret(namespace, name)
            .await?
            .ok_or_else(|| SourceError::secret_not_found(name))
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        if let Some(s) = self
            .objects
            .as_ref()
            .and_then(|o| o.secret(namespace, name))
        {
            return Ok(s);
        }
        Ok(self.api.get_secret(namespace, name).await?)
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::ConfigMap>, SourceError> {
        if let Some(c) = self
            .objects
            .as_ref()
            .and_then(|o| o.config_map(namespace, name))
        {
            return Ok(c);
        }
        Ok(self.api.get_config_map(namespace, name).await?)
    }

    async fn runtime_handler(&self, class: &str) -> Result<String, SourceError> {
        match self.api.get_runtime_class(class).await {
            Ok(Some(rc)) => Ok(rc.handler),
            Ok(None) => Err(SourceError::RuntimeClassNotFound(class.into())),
            Err(error) => Err(SourceError::RuntimeClassLookup {
                class: class.into(),
                error,
            }),
        }
    }

    async fn services(
        &self,
        wait: bool,
    ) -> Result<Vec<k8s_openapi::api::core::v1::Service>, SourceError> {
        if !wait {
            return Ok(self
                .services
                .state()
                .iter()
                .map(|s| (**s).clone())
                .collect());
        }
        let ready = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.services.wait_until_ready(),
        )
        .await;
        if !matches!(ready, Ok(Ok(()))) {
            return Err(SourceError::ServicesNotSynced);
        }
        Ok(self
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect())
    }

    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(String, i64), SourceError> {
        use k8s_openapi::api::authentication::v1::{
            BoundObjectReference, TokenRequest, TokenRequestSpec,
        };
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.into()),
                    uid: Some(pod_uid.into()),
                }),
            },
            ..Default::default()
        };
        let got = self
            .api
            .create_token(namespace, service_account, &req)
            .await?;
        let status = got.status.ok_or(SourceError::NoToken)?;
        Ok((status.token, status.expiration_timestamp.0.as_second()))
    }
}

/// The credentials for `image` from the pod's pull secrets, and the secrets that could not
/// be read.
pub async fn pull_credentials(
    source: &dyn SecretSource,
    pod: &k8s_openapi::api::core::v1::Pod,
    image: &str,
) -> (Vec<AuthConfig>, Vec<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut creds = vec![];
    let mut missing = vec![];
    for r in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
    {
        let read = source.get(ns, &r.name).await.ok();
        match read.map(|s| credentials_from_secret(&s)) {
            Some(Ok(c)) => creds.extend(c),
            _ => missing.push(r.name.clone()),
        }
    }
    (lookup(&creds, image), missing)
}

#[cfg(test)]
mod services_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Static pods do not wait for the Services (upstream: the API server may be one of
    /// them); API pods wait, then fail with upstream's words.
    #[tokio::test(start_paused = true)]
    async fn static_pods_do_not_wait_for_the_services() {
        let (store, _writer) = kube::runtime::reflector::store();
        let s = ApiSecrets {
            api: Arc::new(kubelet_api::fake::FakeApi::new()),
            services: store,
            objects: None,
        };
        assert!(s.services(false).await.unwrap().is_empty());
        let e = s.services(true).await.unwrap_err();
        assert!(matches!(e, SourceError::ServicesNotSynced), "{e}");
    }
}
