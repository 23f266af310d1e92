//! Authentication and authorization of requests to the kubelet API, as upstream's
//! `server/auth.go`: x509 client certificates, bearer tokens through TokenReview, anonymous
//! only when allowed; then SubjectAccessReview on `nodes/<subresource>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// What a request asks to do, in RBAC terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// Upstream's mapping of the kubelet API's paths to `nodes` subresources. A websocket or
/// SPDY upgrade is `create`: it can run commands, whatever its HTTP method.
pub fn attributes(method: &str, path: &str, upgrade: bool, node: &str) -> Attributes {
    let verb = if upgrade {
        "create"
    } else {
        match method {
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "get",
        }
    };
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let subresource = match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        _ => "proxy",
    };
    Attributes {
        verb: verb.into(),
        resource: "nodes".into(),
        subresource: subresource.into(),
        name: node.into(),
    }
}

/// An error from the kubelet behind the server (a reviewer, a health check), kept whole.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait::async_trait]
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    /// `Ok(None)`: the token was reviewed and is not valid.
    async fn review(&self, token: &str) -> Result<Option<UserInfo>, BoxError>;
}

#[async_trait::async_trait]
pub trait AccessReviewer: Send + Sync + std::fmt::Debug {
    async fn allowed(&self, user: &UserInfo, attrs: &Attributes) -> Result<bool, BoxError>;
}

/// Entries a cache holds at most: a flood of distinct tokens cannot grow it further.
pub const CACHE_MAX: usize = 4096;

/// A small TTL cache, as upstream's webhook caches, bounded to [`CACHE_MAX`] entries.
#[derive(Debug)]
struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.get(k)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V, ttl: Duration) {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if g.len() >= CACHE_MAX && !g.contains_key(&k) {
            g.retain(|_, (until, _)| now < *until);
        }
        if g.len() >= CACHE_MAX && !g.contains_key(&k) {
            // Still full of live entries: drop the one closest to expiring.
            if let Some(oldest) = g
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(k, _)| k.clone())
            {
                g.remove(&oldest);
            }
        }
        g.insert(k, (now + ttl, v));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The cache key of a bearer token: its SHA-256, so tokens are not kept in memory.
fn token_key(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 32];
    k.copy_from_slice(d.as_ref());
    k
}

#[derive(Debug)]
pub struct Authenticator {
    pub anonymous: bool,
    pub tokens: Option<Arc<dyn TokenReviewer>>,
    pub ttl: Duration,
    cache: Cache<[u8; 32], Option<UserInfo>>,
}

impl Authenticator {
    pub fn new(anonymous: bool, tokens: Option<Arc<dyn TokenReviewer>>, ttl: Duration) -> Self {
        Authenticator {
            anonymous,
            tokens,
            ttl,
            cache: Cache::new(),
        }
    }

    /// `None`: 401.
    pub async fn authenticate(
        &self,
        peer: Option<&UserInfo>,
        authorization: Option<&str>,
    ) -> Option<UserInfo> {
        if let Some(u) = peer {
            return Some(u.clone());
        }
        if let (Some(reviewer), Some(token)) = (
            &self.tokens,
            authorization.and_then(|h| h.strip_prefix("Bearer ")),
        ) {
            let token = token.trim();
            if token.is_empty() {
                return None;
            }
            let key = token_key(token);
            if let Some(cached) = self.cache.get(&key) {
                return cached;
            }
            return match reviewer.review(token).await {
                Ok(user) => {
                    self.cache.put(key, user.clone(), self.ttl);
                    user
                }
                // The reviewer failed: not cached, refused.
                Err(_) => None,
            };
        }
        self.anonymous.then(UserInfo::anonymous)
    }
}

#[derive(Debug)]
pub struct Authorizer {
    pub reviewer: Option<Arc<dyn AccessReviewer>>,
    pub allowed_ttl: Duration,
    pub denied_ttl: Duration,
    cache: Cache<(UserInfo, Attributes), bool>,
}

impl Authorizer {
    /// `reviewer` None: AlwaysAllow.
    pub fn new(
        reviewer: Option<Arc<dyn AccessReviewer>>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
    ) -> Self {
        Authorizer {
            reviewer,
            allowed_ttl,
            denied_ttl,
            cache: Cache::new(),
        }
    }

    pub async fn allowed(&self, user: &UserInfo, attrs: &Attributes) -> bool {
        let Some(r) = &self.reviewer else { return true };
        let key = (user.clone(), attrs.clone());
        if let Some(v) = self.cache.get(&key) {
            return v;
        }
        match r.allowed(user, attrs).await {
            Ok(v) => {
                self.cache
                    .put(key, v, if v { self.allowed_ttl } else { self.denied_ttl });
                v
            }
            Err(_) => false,
        }
    }
}

/// The user a verified client certificate names: CN, with the O entries as groups.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_mapping() {
        let a = attributes("GET", "/stats/summary", false, "n1");
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str(), a.name.as_str()),
            ("get", "stats", "n1")
        );
        assert_eq!(
            attributes("GET", "/metrics/probes", false, "n").subresource,
            "metrics"
        );
        assert_eq!(attributes("GET", "/logs/", false, "n").subresource, "log");
        assert_eq!(
            attributes("GET", "/containerLogs/a/b/c", false, "n").subresource,
            "proxy"
        );
        assert_eq!(attributes("POST", "/exec/a/b/c", false, "n").verb, "create");
        assert_eq!(
            attributes("GET", "/exec/a/b/c", true, "n").verb,
            "create",
            "websocket exec is create"
        );
    }

    #[derive(Debug)]
    struct Tokens;
    #[async_trait::async_trait]
    impl TokenReviewer for Tokens {
        async fn review(&self, token: &str) -> Result<Option<UserInfo>, BoxError> {
            match token {
                "good" => Ok(Some(UserInfo {
                    name: "alice".into(),
                    uid: String::new(),
                    groups: vec![],
                })),
                "boom" => Err("webhook down".into()),
                _ => Ok(None),
            }
        }
    }

    #[tokio::test]
    async fn authentication_order() {
        let a = Authenticator::new(false, Some(Arc::new(Tokens)), Duration::from_secs(60));
        let peer = UserInfo {
            name: "system:node:n".into(),
            uid: String::new(),
            groups: vec![],
        };
        assert_eq!(
            a.authenticate(Some(&peer), Some("Bearer good"))
                .await
                .unwrap()
                .name,
            "system:node:n"
        );
        assert_eq!(
            a.authenticate(None, Some("Bearer good"))
                .await
                .unwrap()
                .name,
            "alice"
        );
        assert!(a.authenticate(None, Some("Bearer bad")).await.is_none());
        assert!(a.authenticate(None, Some("Bearer boom")).await.is_none());
        assert!(a.authenticate(None, None).await.is_none());
        let anon = Authenticator::new(true, None, Duration::from_secs(60));
        assert_eq!(
            anon.authenticate(None, None).await,
            Some(UserInfo::anonymous())
        );
    }

    /// A flood of distinct tokens leaves the cache at its bound, and a token that was
    /// reviewed stays served from the cache while younger entries come and go.
    #[tokio::test]
    async fn token_cache_is_bounded_and_keyed_by_hash() {
        let a = Authenticator::new(false, Some(Arc::new(Tokens)), Duration::from_secs(60));
        for i in 0..(CACHE_MAX + 500) {
            assert!(
                a.authenticate(None, Some(&format!("Bearer bogus-{i}")))
                    .await
                    .is_none()
            );
        }
        assert_eq!(a.cache.len(), CACHE_MAX);
        assert!(
            a.cache.get(&token_key("bogus-0")).is_none(),
            "oldest dropped"
        );
        assert_eq!(
            a.cache
                .get(&token_key(&format!("bogus-{}", CACHE_MAX + 499))),
            Some(None)
        );
        let keys = a.cache.entries.lock().map(|g| g.len()).unwrap_or(0);
        assert_eq!(keys, CACHE_MAX);
    }
}
