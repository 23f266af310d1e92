//! hostPath `type` checks (upstream `pkg/volume/hostpath`), with its error messages.

use crate::{Result, VolumeError};
use std::fs;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types, creates) `path` for the volume's `type`.
pub fn check_type(path: &Path, kind: Option<&str>) -> Result<()> {
    let shown = path.display();
    let meta = fs::metadata(path).ok();
    let fail = |what: &str| {
        Err(VolumeError::Invalid(format!(
            "hostPath type check failed: {shown} is not a {what}"
        )))
    };
    let ft = meta.as_ref().map(|m| m.file_type());
    match kind.unwrap_or_default() {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => {
            fs::create_dir_all(path).map_err(VolumeError::io("creating", path))
        }
        "Directory" | "DirectoryOrCreate" if !ft.is_some_and(|t| t.is_dir()) => fail("directory"),
        "Directory" | "DirectoryOrCreate" => Ok(()),
        "FileOrCreate" if meta.is_none() => fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(VolumeError::io("creating", path)),
        "File" | "FileOrCreate" if !ft.is_some_and(|t| t.is_file()) => fail("file"),
        "File" | "FileOrCreate" => Ok(()),
        "Socket" if !ft.is_some_and(|t| t.is_socket()) => fail("socket file"),
        "CharDevice" if !ft.is_some_and(|t| t.is_char_device()) => fail("character device"),
        "BlockDevice" if !ft.is_some_and(|t| t.is_block_device()) => fail("block device"),
        "Socket" | "CharDevice" | "BlockDevice" => Ok(()),
        other => Err(VolumeError::Invalid(format!(
            "{other} is an invalid volume type"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let d = std::env::temp_dir().join(format!("krs-hp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let dir = d.join("made/deep");
        assert!(check_type(&dir, Some("DirectoryOrCreate")).is_ok());
        assert!(dir.is_dir());
        let f = d.join("f");
        assert!(check_type(&f, Some("FileOrCreate")).is_ok());
        assert!(f.is_file());
        assert!(check_type(&f, Some("File")).is_ok());
        let msg = |r: Result<()>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg(check_type(&f, Some("Directory"))),
            format!(
                "hostPath type check failed: {} is not a directory",
                f.display()
            )
        );
        assert!(msg(check_type(&dir, Some("File"))).ends_with("is not a file"));
        assert!(msg(check_type(&d.join("none"), Some("File"))).ends_with("is not a file"));
        assert!(msg(check_type(&f, Some("Socket"))).ends_with("is not a socket file"));
        assert!(check_type(Path::new("/dev/null"), Some("CharDevice")).is_ok());
        assert!(msg(check_type(&f, Some("BlockDevice"))).ends_with("is not a block device"));
        assert!(msg(check_type(&f, Some("Bogus"))).contains("invalid volume type"));
        assert!(check_type(&d.join("none"), None).is_ok());
        let _ = fs::remove_dir_all(&d);
    }
}
