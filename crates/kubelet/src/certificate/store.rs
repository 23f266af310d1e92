//! Where rotated pairs live (upstream `client-go/util/certificate/certificate_store.go`):
//! each pair is one file `<prefix>-<UTC time>.pem` (chain, then key; mode 0600), and
//! `<prefix>-current.pem` is an absolute symlink to the one in use.
//!
//! Unlike upstream, which removes `-current.pem` before renaming `-updated.pem` over it, the
//! link is replaced by a single rename, so a reader (or a crash) never finds it missing.

use super::CertError;
use super::pki::{Pair, load_pair};
use k8s_openapi::jiff::Timestamp;
use kubelet_core::certificate::store_file_name;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The pairs of one prefix (`kubelet-client`, `kubelet-server`) in one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    prefix: String,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CertError {
    let path = path.to_path_buf();
    move |source| CertError::Io { what, path, source }
}

/// Makes the directory's entries (a rename, a new link) durable.
fn sync_dir(dir: &Path) {
    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
}

impl FileStore {
    /// `cert_file`/`key_file` are the explicitly configured pair (`--tls-cert-file` and
    /// `--tls-private-key-file` for serving), used while the store has none of its own. A
    /// link left by an interrupted update is finished here.
    pub fn new(
        prefix: &str,
        dir: &Path,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Result<Self, CertError> {
        // The link target must be absolute (kubeadm and others follow it from elsewhere).
        let dir = std::path::absolute(dir).map_err(io_err("resolving", dir))?;
        let s = FileStore {
            dir,
            prefix: prefix.to_string(),
            cert_file,
            key_file,
        };
        s.recover();
        Ok(s)
    }

    /// `<dir>/<prefix>-current.pem`: what a kubeconfig points at.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    fn updated_path(&self) -> PathBuf {
        self.dir.join(format!("{}-updated.pem", self.prefix))
    }

    /// A `-updated.pem` link means an update stopped between making the link and renaming it:
    /// its target was written in full first, so finish the rename (or drop a broken link).
    fn recover(&self) {
        let updated = self.updated_path();
        if updated.symlink_metadata().is_err() {
            return;
        }
        let usable = std::fs::read(&updated)
            .ok()
            .is_some_and(|b| load_pair(&b, &b).is_ok());
        let r = if usable {
            std::fs::rename(&updated, self.current_path())
        } else {
            std::fs::remove_file(&updated)
        };
        match r {
            Ok(()) => {
                info!(path = %updated.display(), usable, "recovered an interrupted certificate update")
            }
            Err(e) => {
                warn!(path = %updated.display(), error = %e, "recovering an interrupted certificate update")
            }
        }
        sync_dir(&self.dir);
    }

    /// The pair in use: `-current.pem`, else the configured files, else `<prefix>.crt/.key`
    /// in the directory. A file that does not load (truncated, key not the certificate's)
    /// counts as absent, so the next source, or a new CSR, takes over.
    pub fn current(&self) -> Option<Pair> {
        let cur = self.current_path();
        let dir_pair = (
            self.dir.join(format!("{}.crt", self.prefix)),
            self.dir.join(format!("{}.key", self.prefix)),
        );
        let candidates = [
            Some((cur.clone(), cur)),
            self.cert_file.clone().zip(self.key_file.clone()),
            Some(dir_pair),
        ];
        for (c, k) in candidates.into_iter().flatten() {
            match Self::load(&c, &k) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => {
                    warn!(cert = %c.display(), key = %k.display(), error = %e, "ignoring an unusable certificate")
                }
            }
        }
        None
    }

    fn load(cert: &Path, key: &Path) -> Result<Option<Pair>, CertError> {
        let read = |p: &Path| match std::fs::read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", p)(e)),
        };
        let (Some(c), Some(k)) = (read(cert)?, read(key)?) else {
            return Ok(None);
        };
        load_pair(&c, &k).map(Some)
    }

    /// Stores a newly issued pair and makes it current. `now` names the file.
    pub fn update(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: Timestamp,
    ) -> Result<Pair, CertError> {
        let pair = load_pair(cert_pem, key_pem)?;
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let file = self.dir.join(store_file_name(&self.prefix, now));
        let mut data = cert_pem.to_vec();
        if !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        data.extend_from_slice(key_pem);
        // Whole or not at all: the file may already be current (two updates in one second).
        super::write_atomic(&file, &data, 0o600)?;
        let updated = self.updated_path();
        match std::fs::remove_file(&updated) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(io_err("removing", &updated)(e));
            }
            _ => {}
        }
        std::os::unix::fs::symlink(&file, &updated).map_err(io_err("linking", &updated))?;
        // rename(2) replaces the old link in one step.
        std::fs::rename(&updated, self.current_path()).map_err(io_err("renaming", &updated))?;
        sync_dir(&self.dir);
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::pki::tests::{TestCa, issue, tmpdir, ts};
    use kubelet_core::certificate::client_template;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn pair(ca: &TestCa, node: &str) -> (String, String) {
        issue(
            ca,
            &client_template(node),
            ts("2026-01-01T00:00:00Z"),
            ts("2027-01-01T00:00:00Z"),
        )
    }

    #[test]
    fn update_writes_a_file_and_links_it() {
        let dir = tmpdir("store-update");
        let ca = TestCa::new();
        let store = FileStore::new("kubelet-client", &dir, None, None).unwrap();
        assert!(store.current().is_none());
        let (c, k) = pair(&ca, "a");
        let p = store
            .update(c.as_bytes(), k.as_bytes(), ts("2026-05-06T07:08:09Z"))
            .unwrap();
        let file = dir.join("kubelet-client-2026-05-06-07-08-09.pem");
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{c}{k}"));
        let cur = store.current_path();
        assert_eq!(cur, dir.join("kubelet-client-current.pem"));
        let target = std::fs::read_link(&cur).unwrap();
        assert!(target.is_absolute());
        assert_eq!(target, file);
        let got = store.current().unwrap();
        assert_eq!(got.info, p.info);
        assert_eq!(got.info.common_name, "system:node:a");
        assert!(!dir.join("kubelet-client-updated.pem").exists());

        // A relative directory still links absolutely.
        let rel = FileStore::new("kubelet-server", Path::new("."), None, None).unwrap();
        assert!(rel.current_path().is_absolute());

        // A pair whose key is not the certificate's is refused, and nothing changes.
        let (c2, _) = pair(&ca, "b");
        assert!(
            store
                .update(c2.as_bytes(), k.as_bytes(), ts("2026-05-06T07:08:10Z"))
                .is_err()
        );
        assert_eq!(std::fs::read_link(&cur).unwrap(), file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reader racing 30 updates always finds a current pair that loads.
    #[test]
    fn current_never_disappears() {
        let dir = tmpdir("store-atomic");
        let ca = TestCa::new();
        let store = FileStore::new("kubelet-client", &dir, None, None).unwrap();
        let (c, k) = pair(&ca, "a");
        store
            .update(c.as_bytes(), k.as_bytes(), ts("2026-01-01T00:00:00Z"))
            .unwrap();
        let pairs: Vec<_> = (0..3).map(|_| pair(&ca, "a")).collect();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (done, cur) = (done.clone(), store.current_path());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let b = std::fs::read(&cur).expect("current vanished");
                    load_pair(&b, &b).expect("current did not load");
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..30 {
            let (c, k) = &pairs[i % 3];
            // Same second every third time: the file itself is replaced whole too.
            let now = ts("2026-01-01T00:00:01Z")
                + k8s_openapi::jiff::SignedDuration::from_secs(i as i64 / 3);
            store.update(c.as_bytes(), k.as_bytes(), now).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_interrupted_update_is_finished() {
        let dir = tmpdir("store-recover");
        let ca = TestCa::new();
        let (c, k) = pair(&ca, "a");
        let file = dir.join("kubelet-client-2026-01-01-00-00-00.pem");
        std::fs::write(&file, format!("{c}{k}")).unwrap();
        std::os::unix::fs::symlink(&file, dir.join("kubelet-client-updated.pem")).unwrap();
        let store = FileStore::new("kubelet-client", &dir, None, None).unwrap();
        assert_eq!(std::fs::read_link(store.current_path()).unwrap(), file);
        assert!(store.current().is_some());
        assert!(
            dir.join("kubelet-client-updated.pem")
                .symlink_metadata()
                .is_err()
        );

        // A dangling one is dropped, and the current pair stays.
        std::os::unix::fs::symlink(dir.join("gone.pem"), dir.join("kubelet-client-updated.pem"))
            .unwrap();
        let store = FileStore::new("kubelet-client", &dir, None, None).unwrap();
        assert!(
            dir.join("kubelet-client-updated.pem")
                .symlink_metadata()
                .is_err()
        );
        assert_eq!(std::fs::read_link(store.current_path()).unwrap(), file);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fallbacks_in_upstream_order() {
        let dir = tmpdir("store-fallback");
        let ca = TestCa::new();
        let (flag_c, flag_k, dir_c, dir_k) = (
            dir.join("flag.crt"),
            dir.join("flag.key"),
            dir.join("kubelet-server.crt"),
            dir.join("kubelet-server.key"),
        );
        let store = FileStore::new(
            "kubelet-server",
            &dir,
            Some(flag_c.clone()),
            Some(flag_k.clone()),
        )
        .unwrap();
        assert!(store.current().is_none());
        let (c, k) = pair(&ca, "in-dir");
        std::fs::write(&dir_c, &c).unwrap();
        std::fs::write(&dir_k, &k).unwrap();
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:in-dir"
        );
        let (c, k) = pair(&ca, "flags");
        std::fs::write(&flag_c, &c).unwrap();
        // A cert without its key is no pair.
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:in-dir"
        );
        std::fs::write(&flag_k, &k).unwrap();
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:flags"
        );
        let (c, k) = pair(&ca, "stored");
        store
            .update(c.as_bytes(), k.as_bytes(), ts("2026-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:stored"
        );

        // A truncated current pem (written by something else) counts as absent.
        let target = std::fs::read_link(store.current_path()).unwrap();
        let full = std::fs::read(&target).unwrap();
        std::fs::write(&target, &full[..full.len() / 3]).unwrap();
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:flags"
        );
        std::fs::write(&target, b"").unwrap();
        std::fs::remove_file(&flag_k).unwrap();
        assert_eq!(
            store.current().unwrap().info.common_name,
            "system:node:in-dir"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
