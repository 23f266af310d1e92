//! The serving certificate when none is configured (upstream `kubelet.go`
//! `initializeServerCertificate`: a self-signed pair in `--cert-dir`, made once, reused after).
//! Each file is written whole (temporary file, fsync, rename), and a pair that does not load
//! (unreadable, truncated, or a key that is not the certificate's) is made afresh, so a crash
//! mid-write never leaves a kubelet that cannot start.
//!
//! The rotated certificates (issue #17) live in the submodules: [`pki`] (parse, load, CSR),
//! [`store`] (upstream's FileStore), [`manager`] (the rotation task) and [`bootstrap`] (the
//! kubeconfig written for a bootstrapped client certificate).

pub mod bootstrap;
pub mod client;
pub mod manager;
pub mod pki;
pub mod serving;
pub mod store;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Whether the files hold a certificate and its own private key that TLS can serve with.
fn usable_pair(crt: &Path, key: &Path) -> bool {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let Ok(certs) =
        CertificateDer::pem_file_iter(crt).and_then(|i| i.collect::<Result<Vec<_>, _>>())
    else {
        return false;
    };
    let Ok(k) = PrivateKeyDer::from_pem_file(key) else {
        return false;
    };
    if certs.is_empty() {
        return false;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let Ok(signing) = provider.key_provider.load_private_key(k) else {
        return false;
    };
    rustls::sign::CertifiedKey::new(certs, signing)
        .keys_match()
        .is_ok()
}

/// Why the self-signed serving pair could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("parsing {what}: {message}")]
    Parse { what: &'static str, message: String },
    #[error("the private key does not match the certificate")]
    KeyMismatch,
}

/// Writes `data` to `p` whole: a temporary file beside it, synced, then renamed over it.
pub(crate) fn write_atomic(p: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let err = |source: std::io::Error| CertError::Io {
        what: "writing",
        path: p.to_path_buf(),
        source,
    };
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)?;
    // The rename itself must reach the disk too.
    if let Some(d) = p.parent() {
        let _ = std::fs::File::open(d).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// `<dir>/kubelet.crt` and `<dir>/kubelet.key`: reused if they load as a pair, else made for
/// `host` (and `localhost`, 127.0.0.1 and the given IPs) and written, the key readable by root
/// only. Valid for a year from `now`.
pub fn self_signed(
    dir: &Path,
    host: &str,
    ips: &[std::net::IpAddr],
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(PathBuf, PathBuf), CertError> {
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if usable_pair(&crt, &key) {
        return Ok((crt, key));
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sans: Vec<String> = vec![host.to_string(), "localhost".into(), "127.0.0.1".into()];
    sans.extend(ips.iter().map(|i| i.to_string()));
    sans.dedup();
    let mut params = rcgen::CertificateParams::new(sans)?;
    let since_epoch = u64::try_from(now.as_nanosecond()).unwrap_or(0);
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(since_epoch);
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!(
            "{host}@{}",
            now.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&pair)?;
    // The key first: a crash between the two leaves a pair that does not match, made afresh
    // at the next start.
    write_atomic(&key, pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&crt, cert.pem().as_bytes(), 0o644)?;
    Ok((crt, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("krs-cert-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (c, k) = self_signed(
            &dir,
            "node-a",
            &["10.0.0.5".parse().unwrap()],
            kubelet_core::clock::system().now(),
        )
        .unwrap();
        let first = std::fs::read_to_string(&c).unwrap();
        assert!(first.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (c2, _) =
            self_signed(&dir, "node-a", &[], kubelet_core::clock::system().now()).unwrap();
        assert_eq!(std::fs::read_to_string(c2).unwrap(), first);
        // A truncated certificate (a crash mid-write by an older kubelet) is made afresh.
        std::fs::write(&c, &first[..first.len() / 2]).unwrap();
        let (c3, k3) =
            self_signed(&dir, "node-a", &[], kubelet_core::clock::system().now()).unwrap();
        let third = std::fs::read_to_string(&c3).unwrap();
        assert_ne!(third, first);
        assert!(usable_pair(&c3, &k3));
        // A key from another pair: made afresh too.
        let other = dir.join("other");
        let (_, k_other) =
            self_signed(&other, "node-b", &[], kubelet_core::clock::system().now()).unwrap();
        std::fs::copy(&k_other, &k3).unwrap();
        assert!(!usable_pair(&c3, &k3));
        let (c4, k4) =
            self_signed(&dir, "node-a", &[], kubelet_core::clock::system().now()).unwrap();
        assert!(usable_pair(&c4, &k4));
        assert!(!dir.join("kubelet.crt.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
