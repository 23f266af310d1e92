//! Disk usage of a directory tree, as upstream's `fs.DiskUsage` gets it from `du -x -s`.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Allocated bytes (blocks × 512), so sparse files count what they occupy.
    pub bytes: u64,
    pub inodes: u64,
}

/// Walks `root` without following symlinks or leaving its filesystem, counting each inode
/// once. Files that vanish during the walk are skipped; only an unreadable root is an error.
pub fn disk_usage(root: &Path) -> io::Result<DiskUsage> {
    let top = std::fs::symlink_metadata(root)?;
    let dev = top.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut usage = DiskUsage::default();
    let mut add = |m: &std::fs::Metadata, usage: &mut DiskUsage| {
        // Hard links: count the inode once, as du does.
        if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
            return;
        }
        usage.bytes = usage.bytes.saturating_add(m.blocks().saturating_mul(512));
        usage.inodes += 1;
    };
    add(&top, &mut usage);
    if !top.is_dir() {
        return Ok(usage);
    }
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root => {
                tracing::debug!(dir = %dir.display(), error = %e, "skipping directory");
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            add(&m, &mut usage);
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn counts_blocks_and_inodes_once() {
        let d = std::env::temp_dir().join(format!("krs-du-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let mut f = std::fs::File::create(d.join("sub/data")).unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.sync_all().unwrap();
        std::fs::hard_link(d.join("sub/data"), d.join("link")).unwrap();
        std::os::unix::fs::symlink("/", d.join("escape")).unwrap();
        let u = disk_usage(&d).unwrap();
        // root, sub, data (once despite the hard link), the symlink itself.
        assert_eq!(u.inodes, 4);
        assert!(u.bytes >= 64 * 1024, "{u:?}");
        assert!(u.bytes < 1024 * 1024, "the symlink was not followed: {u:?}");
        std::fs::remove_dir_all(&d).unwrap();
        assert!(disk_usage(&d).is_err());
    }
}

/// Removes `root` and everything under it, as `rm -rf --one-file-system`: symlinks are removed,
/// never followed, and a directory on another filesystem (a mount left behind) stops the
/// removal with an error instead of emptying that filesystem. A missing `root` is not an error.
pub fn remove_all_one_fs(root: &Path) -> io::Result<()> {
    let top = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !top.is_dir() {
        return std::fs::remove_file(root);
    }
    fn walk(dir: &Path, dev: u64) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let p = entry.path();
            let m = std::fs::symlink_metadata(&p)?;
            if m.is_dir() {
                if m.dev() != dev {
                    return Err(io::Error::other(format!(
                        "{} is on another filesystem (still mounted?)",
                        p.display()
                    )));
                }
                walk(&p, dev)?;
                std::fs::remove_dir(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
        Ok(())
    }
    walk(root, top.dev())?;
    std::fs::remove_dir(root)
}

#[cfg(test)]
mod one_fs_tests {
    use super::*;

    #[test]
    fn removes_a_tree_without_following_links() {
        let base = std::env::temp_dir().join(format!("krs-rmfs-{}", std::process::id()));
        let keep = base.join("keep");
        let tree = base.join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("precious"), "x").unwrap();
        std::fs::write(tree.join("a/b/f"), "y").unwrap();
        std::os::unix::fs::symlink(&keep, tree.join("a/link")).unwrap();
        remove_all_one_fs(&tree).unwrap();
        assert!(!tree.exists());
        assert!(
            keep.join("precious").exists(),
            "a link's target is left alone"
        );
        remove_all_one_fs(&tree).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn stops_at_another_filesystem() {
        // A tmpfs left mounted inside the tree (needs root, as the kubelet and CI run).
        let base = std::env::temp_dir().join(format!("krs-rmfs2-{}", std::process::id()));
        let m = base.join("vol/mnt");
        std::fs::create_dir_all(&m).unwrap();
        rustix::mount::mount(
            "tmpfs",
            &m,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            None,
        )
        .expect("mounting a tmpfs (run as root)");
        std::fs::write(m.join("data"), "keep").unwrap();
        std::os::unix::fs::symlink("/proc", base.join("proc")).unwrap();
        let e = remove_all_one_fs(&base).unwrap_err();
        assert!(e.to_string().contains("another filesystem"), "{e}");
        assert_eq!(std::fs::read_to_string(m.join("data")).unwrap(), "keep");
        rustix::mount::unmount(&m, rustix::mount::UnmountFlags::empty()).unwrap();
        remove_all_one_fs(&base).unwrap();
        assert!(!base.exists());
    }
}
