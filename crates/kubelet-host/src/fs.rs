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
