use super::*;
use kubelet_core::clock::SystemClock;
use kubelet_host::mount::FakeMounter;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("krs-vm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": {"volumes": volumes, "containers": [{"name": "c", "volumeMounts": mounts}]}
    }))
    .unwrap_or_default()
}

fn manager(root: &Path, m: Arc<FakeMounter>) -> VolumeManager {
    VolumeManager::new(
        root.to_path_buf(),
        m,
        None,
        Recorder::disabled(),
        Arc::new(SystemClock),
    )
}

#[tokio::test]
async fn sets_up_mounts_and_tears_down() {
    let root = tmp("setup");
    let m = Arc::new(FakeMounter::default());
    let vm = manager(&root, m.clone());
    let p = pod(
        serde_json::json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ]),
        serde_json::json!([
            {"name": "scratch", "mountPath": "/s", "subPath": "a/b"},
            {"name": "info", "mountPath": "/info"}
        ]),
    );
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    let info = volume_dir(&root, "u1", DOWNWARD_API, "info");
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap_or_default(),
        "app=\"x\""
    );
    let calls = m.calls.lock().map(|c| c.clone()).unwrap_or_default();
    assert!(
        calls.iter().any(|c| c.contains("mem Some(1048576)")),
        "{calls:?}"
    );
    let c = p
        .spec
        .as_ref()
        .map(|s| s.containers[0].clone())
        .unwrap_or_default();
    let mounts = vm.container_mounts(&p, &c, &[]).unwrap_or_default();
    assert_eq!(mounts.len(), 2);
    assert!(mounts[0].host_path.ends_with("volume-subpaths/scratch/c/0"));
    assert!(
        volume_dir(&root, "u1", EMPTY_DIR, "scratch")
            .join("a/b")
            .is_dir()
    );
    // API data is read-only even when the pod does not ask; an emptyDir stays writable.
    assert!(mounts[1].readonly);
    assert!(!mounts[0].readonly);
    // Mounted again (the container restarted): the old bind is replaced.
    assert!(vm.container_mounts(&p, &c, &[]).is_ok());

    assert_eq!(vm.unmount_pod("u1").map_err(|e| e.to_string()), Ok(()));
    assert!(m.mount_points().unwrap_or_default().is_empty());
    assert!(!root.join("pods/u1/volumes").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn failures_block_the_pod() {
    let root = tmp("fail");
    let m = Arc::new(FakeMounter::default());
    let vm = manager(&root, m.clone());
    let p = pod(
        serde_json::json!([
            {"name": "cfg", "configMap": {"name": "missing"}},
            {"name": "nfs", "nfs": {"server": "x", "path": "/"}},
            {"name": "hp", "hostPath": {"path": "/nonexistent-krs", "type": "Directory"}},
            {"name": "ok", "emptyDir": {}}
        ]),
        serde_json::json!([]),
    );
    assert_eq!(
        vm.mount_pod(&p).await.map_err(|e| e.to_string()),
        Err("unmounted volumes=[cfg nfs hp]".into())
    );
    // A mount that fails leaves the pod directory in place: deleting through a mount
    // would delete the volume's data.
    let p = pod(
        serde_json::json!([{"name": "s", "secret": {"secretName": "x", "optional": true}}]),
        serde_json::json!([]),
    );
    assert!(vm.mount_pod(&p).await.is_err(), "standalone: no secrets");
    *m.fail_on.lock().unwrap_or_else(|e| e.into_inner()) = Some("never".into());
    let _ = m.mount_tmpfs(&root.join("pods/u1/volumes/x"), None);
    *m.fail_on.lock().unwrap_or_else(|e| e.into_inner()) = Some("volumes/x".into());
    assert!(vm.unmount_pod("u1").is_err());
    assert!(root.join("pods/u1/volumes").exists());
    vm.cleanup_orphans(&HashSet::new());
    assert!(root.join("pods/u1").exists());
    *m.fail_on.lock().unwrap_or_else(|e| e.into_inner()) = None;
    vm.cleanup_orphans(&HashSet::from(["u1".to_string()]));
    assert!(root.join("pods/u1").exists());
    vm.cleanup_orphans(&HashSet::new());
    assert!(!root.join("pods/u1").exists());
    // A pod whose volumes were set up after the active set was taken is not an orphan.
    let q = pod(
        serde_json::json!([{"name": "e", "emptyDir": {}}]),
        serde_json::json!([]),
    );
    assert_eq!(vm.mount_pod(&q).await.map_err(|e| e.to_string()), Ok(()));
    vm.cleanup_orphans(&HashSet::new());
    assert!(root.join("pods/u1/volumes").exists(), "a worker's pod kept");
    // Once torn down by its worker, it is fair game.
    assert_eq!(vm.unmount_pod("u1").map_err(|e| e.to_string()), Ok(()));
    vm.cleanup_orphans(&HashSet::new());
    assert!(!root.join("pods/u1").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn token_renewal() {
    let t = Token {
        token: String::new(),
        issued_unix: 1000,
        expires_unix: 1000 + 600,
    };
    assert!(!t.needs_renewal(1000 + 479));
    assert!(t.needs_renewal(1000 + 481));
    let long = Token {
        expires_unix: 1000 + 10 * TOKEN_MAX_AGE_SECS,
        ..t
    };
    assert!(long.needs_renewal(1000 + TOKEN_MAX_AGE_SECS + 1));
}

/// Issues JWT-shaped tokens and counts the requests.
#[derive(Debug, Default)]
struct TokenIssuer {
    issued: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SecretSource for TokenIssuer {
    async fn get(
        &self,
        _: &str,
        _: &str,
    ) -> Result<k8s_openapi::api::core::v1::Secret, crate::credentialprovider::SourceError> {
        Err(crate::credentialprovider::SourceError::secret_not_found(
            "none",
        ))
    }
    async fn request_token(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        seconds: i64,
        _: &str,
        _: &str,
    ) -> Result<(String, i64), crate::credentialprovider::SourceError> {
        use base64::Engine;
        let n = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let iat = kubelet_core::clock::Clock::now_unix_ns(&SystemClock) / 1_000_000_000;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::json!({"iat": iat, "exp": iat + seconds, "n": n}).to_string());
        Ok((format!("h.{claims}.s"), iat + seconds))
    }
}

#[tokio::test]
async fn a_restart_reuses_the_written_token() {
    let root = tmp("token-restart");
    let issuer = Arc::new(TokenIssuer::default());
    let new_manager = || {
        VolumeManager::new(
            root.clone(),
            Arc::new(FakeMounter::default()),
            Some(issuer.clone()),
            Recorder::disabled(),
            Arc::new(SystemClock),
        )
    };
    let p = pod(
        serde_json::json!([{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}]}}]),
        serde_json::json!([{"name": "tok", "mountPath": "/t"}]),
    );
    let file = volume_dir(&root, "u1", PROJECTED, "tok").join("token");
    let vm = new_manager();
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    let first = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(issuer.issued.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The container rewrote the token in its volume: a restart must not trust it.
    let data = std::fs::read_link(file.parent().unwrap().join("..data")).unwrap();
    let real = file.parent().unwrap().join(data).join("token");
    std::fs::write(&real, "forged.eyJpYXQiOjEsImV4cCI6OTk5OTk5OTk5OTl9.x").unwrap();
    // A new manager (the kubelet restarted) finds the token in its own store, still young.
    let vm = new_manager();
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    assert_eq!(issuer.issued.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap_or_default(), first);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn token_read_back_from_disk() {
    use base64::Engine;
    let dir = tmp("token");
    std::fs::create_dir_all(&dir).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"iat":1700000000,"exp":1700000600,"sub":"x"}"#);
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig");
    std::fs::write(dir.join("token"), &jwt).unwrap();
    let t = token_on_disk(&dir.join("token")).unwrap();
    assert_eq!((t.issued_unix, t.expires_unix), (1700000000, 1700000600));
    assert_eq!(t.token, jwt);
    std::fs::write(dir.join("garbage"), "not a jwt").unwrap();
    assert!(token_on_disk(&dir.join("garbage")).is_none());
    assert!(token_on_disk(&dir.join("missing")).is_none());
    // A link is not followed, even to a valid token.
    std::os::unix::fs::symlink(dir.join("token"), dir.join("link")).unwrap();
    assert!(token_on_disk(&dir.join("link")).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_restart_renews_a_stored_token_past_80_percent() {
    let root = tmp("token-restart-old");
    let issuer = Arc::new(TokenIssuer::default());
    let clock = kubelet_core::clock::FakeClock::new();
    #[allow(clippy::disallowed_methods)] // the issuer stamps tokens with the wall clock
    clock.set(k8s_openapi::jiff::Timestamp::now());
    let new_manager = |c: kubelet_core::clock::SharedClock| {
        VolumeManager::new(
            root.clone(),
            Arc::new(FakeMounter::default()),
            Some(issuer.clone()),
            Recorder::disabled(),
            c,
        )
    };
    let p = pod(
        serde_json::json!([{"name": "tok", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}]}}]),
        serde_json::json!([{"name": "tok", "mountPath": "/t"}]),
    );
    let file = volume_dir(&root, "u1", PROJECTED, "tok").join("token");
    let vm = new_manager(clock.clone());
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    let first = std::fs::read_to_string(&file).unwrap_or_default();
    // The kubelet restarts 500 s later (past 80 % of 600 s): the stored token is renewed.
    clock.advance(std::time::Duration::from_secs(500));
    let vm = new_manager(clock.clone());
    assert_eq!(vm.mount_pod(&p).await.map_err(|e| e.to_string()), Ok(()));
    assert_eq!(issuer.issued.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_ne!(std::fs::read_to_string(&file).unwrap_or_default(), first);
    let _ = std::fs::remove_dir_all(&root);
}
