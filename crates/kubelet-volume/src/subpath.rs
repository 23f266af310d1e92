//! Symlink-safe subPaths, the fix for the bug class of CVE-2017-1002101 and CVE-2021-25741.
//! A subPath is resolved with `openat2(RESOLVE_BENEATH)` from a descriptor of the volume root,
//! so no symlink or `..` can lead out of the volume; missing directories are made one level
//! at a time under descriptors already checked. The caller bind-mounts `/proc/self/fd/N` of
//! the result, so what is mounted is exactly what was checked, even if the path changes.

use crate::{Result, VolumeError};
use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags, fstat, mkdirat, openat, openat2};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn open_beneath(root: &OwnedFd, rel: &str) -> std::result::Result<OwnedFd, Errno> {
    openat2(
        root,
        if rel.is_empty() { "." } else { rel },
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
}

/// An `O_PATH` descriptor of `sub` inside `root`, made as a directory (with `root`'s mode)
/// when it does not exist. `Err` says why; the caller keeps the detail out of user messages.
pub fn open(root: &Path, sub: &str) -> Result<(OwnedFd, bool)> {
    let err = |op: &'static str, e: Errno| VolumeError::io(op, &root.join(sub))(e.into());
    if Path::new(sub).is_absolute() || sub.split('/').any(|s| s == "..") {
        return Err(VolumeError::Invalid(format!(
            "subpath {sub:?} must be a relative path without '..'"
        )));
    }
    let root_fd = openat(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err("opening volume", e))?;
    let root_mode = fstat(&root_fd).map_err(|e| err("stat", e))?.st_mode & 0o7777;
    let escaped = || {
        VolumeError::Invalid(format!(
            "subpath {sub:?} not within volume path {:?}",
            root.display().to_string()
        ))
    };
    match open_beneath(&root_fd, sub) {
        Ok(fd) => {
            let is_dir = FileType::from_raw_mode(fstat(&fd).map_err(|e| err("stat", e))?.st_mode)
                == FileType::Directory;
            return Ok((fd, is_dir));
        }
        Err(Errno::XDEV) | Err(Errno::LOOP) => return Err(escaped()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(err("opening", e)),
    }
    // Make the missing directories, each under an already checked parent.
    let segs: Vec<&str> = sub
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let mut parent = open_beneath(&root_fd, "").map_err(|e| err("opening", e))?;
    for (i, seg) in segs.iter().enumerate() {
        match mkdirat(&parent, *seg, Mode::from_raw_mode(root_mode)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err("mkdir", e)),
        }
        let prefix = segs[..=i].join("/");
        parent = match open_beneath(&root_fd, &prefix) {
            Ok(fd) => fd,
            Err(Errno::XDEV) | Err(Errno::LOOP) => return Err(escaped()),
            Err(e) => return Err(err("opening", e)),
        };
    }
    let is_dir = FileType::from_raw_mode(fstat(&parent).map_err(|e| err("stat", e))?.st_mode)
        == FileType::Directory;
    Ok((parent, is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn escapes_refused_inside_links_kept() {
        let base = std::env::temp_dir().join(format!("krs-sp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let vol = base.join("vol");
        let _ = fs::create_dir_all(vol.join("real"));
        let _ = fs::write(base.join("secret"), "host");
        let _ = std::os::unix::fs::symlink("/etc", vol.join("abs"));
        let _ = std::os::unix::fs::symlink("../secret", vol.join("rel"));
        let _ = std::os::unix::fs::symlink("real", vol.join("inside"));
        for bad in ["abs", "abs/passwd", "rel", "../secret", "/etc"] {
            assert!(open(&vol, bad).is_err(), "{bad} escaped");
        }
        assert!(
            open(&vol, "abs")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("not within volume path")
        );
        assert!(open(&vol, "inside").is_ok_and(|(_, dir)| dir));
        // Missing directories are made, but never through a link that leaves.
        assert!(open(&vol, "new/deeper").is_ok_and(|(_, dir)| dir));
        assert!(vol.join("new/deeper").is_dir());
        assert!(open(&vol, "abs/made-here").is_err());
        assert!(!Path::new("/etc/made-here").exists());
        let _ = fs::remove_dir_all(&base);
    }
}
