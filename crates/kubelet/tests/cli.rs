//! The binary's command line: upstream-style flags, and bad input that ends in exit code 1
//! with a message naming what is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;

fn kubelet(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubelet"))
        .args(args)
        .output()
        .expect("run kubelet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config_file(body: &str) -> tempfile_path::TempFile {
    tempfile_path::TempFile::new(&format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}"
    ))
}

mod tempfile_path {
    use super::*;
    pub struct TempFile(pub std::path::PathBuf);
    impl TempFile {
        pub fn new(body: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "krs-cli-{}-{:?}.yaml",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::File::create(&p)
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
            TempFile(p)
        }
        pub fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn malformed_config_names_the_field() {
    let f = config_file("maxPods: many\n");
    let (code, err) = kubelet(&["--config", f.path(), "--hostname-override=n"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("maxPods"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_config_file() {
    let (code, err) = kubelet(&["--config=/nonexistent/kubelet.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/kubelet.yaml"), "{err}");
}

#[test]
fn bad_flags() {
    let (code, err) = kubelet(&["--node-ip=not-an-ip", "--hostname-override=n"]);
    assert_eq!(code, 1);
    assert!(err.contains("--node-ip"), "{err}");
    let (code, err) = kubelet(&[
        "--node-labels=kubernetes.io/role=master",
        "--hostname-override=n",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels"),
        "{err}"
    );
    let (code, err) = kubelet(&[
        "--container-runtime-endpoint=tcp://1.2.3.4:5",
        "--hostname-override=n",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("--container-runtime-endpoint"), "{err}");
    let (code, err) = kubelet(&["--no-such-flag"]);
    assert_eq!(code, 1);
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, err) = kubelet(&["--register-node=maybe"]);
    assert_eq!(code, 1);
    assert!(err.contains("--register-node"), "{err}");
}

#[test]
fn bad_auth_mode() {
    let f = config_file("authorization: {mode: Sometimes}\n");
    let (code, err) = kubelet(&["--config", f.path(), "--hostname-override=n"]);
    assert_eq!(code, 1);
    assert!(err.contains("authorization.mode"), "{err}");
}
