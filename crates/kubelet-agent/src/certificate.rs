//! The serving certificate when none is configured (upstream `kubelet.go`
//! `initializeServerCertificate`: a self-signed pair in `--cert-dir`, made once, reused after).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `<dir>/kubelet.crt` and `<dir>/kubelet.key`: read if both exist, else made for `host`
/// (and `localhost`, 127.0.0.1 and the given IPs) and written, the key readable by root only.
pub fn self_signed(
    dir: &Path,
    host: &str,
    ips: &[std::net::IpAddr],
) -> Result<(PathBuf, PathBuf), String> {
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if crt.exists() && key.exists() {
        return Ok((crt, key));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut sans: Vec<String> = vec![host.to_string(), "localhost".into(), "127.0.0.1".into()];
    sans.extend(ips.iter().map(|i| i.to_string()));
    sans.dedup();
    let mut params = rcgen::CertificateParams::new(sans).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now();
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
    let pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&pair).map_err(|e| e.to_string())?;
    let write = |p: &Path, data: &str, mode: u32| -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(p)
            .map_err(|e| format!("writing {}: {e}", p.display()))?;
        f.write_all(data.as_bytes())
            .map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write(&key, &pair.serialize_pem(), 0o600)?;
    write(&crt, &cert.pem(), 0o644)?;
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
        let (c, k) = self_signed(&dir, "node-a", &["10.0.0.5".parse().unwrap()]).unwrap();
        let first = std::fs::read_to_string(&c).unwrap();
        assert!(first.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (c2, _) = self_signed(&dir, "node-a", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(c2).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
