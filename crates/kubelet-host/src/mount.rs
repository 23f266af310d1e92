//! Mounts behind the [`Mounter`] trait (upstream `k8s.io/utils/mount`), so the volume manager
//! runs against a [`FakeMounter`] that records every call.

#[cfg(any(test, feature = "test-util"))]
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
#[cfg(any(test, feature = "test-util"))]
use std::sync::Mutex;

pub trait Mounter: Send + Sync + std::fmt::Debug {
    /// A tmpfs at `target`, optionally size-limited (bytes).
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()>;
    /// A bind mount of `source` (which may be a `/proc/self/fd/N` magic link) at `target`.
    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()>;
    /// Makes `target` a recursively shared mount, bind-mounting it onto itself first when it
    /// is not a mount point (mountPropagation needs shared sources).
    fn make_rshared(&self, target: &Path) -> io::Result<()>;
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Every mount point, from `/proc/self/mountinfo`.
    fn mount_points(&self) -> io::Result<Vec<PathBuf>>;
}

/// Mount points at or under `dir`, deepest first: the order to unmount them in.
pub fn mount_points_under(m: &dyn Mounter, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = m
        .mount_points()?
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    Ok(v)
}

/// The mount points in a mountinfo text; octal escapes (`\040` for a space) decoded.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Default, Clone, Copy)]
pub struct RealMounter;

impl Mounter for RealMounter {
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()> {
        use rustix::mount::{MountFlags, mount};
        let data = match size {
            Some(s) => format!("size={s}"),
            None => String::new(),
        };
        let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
        mount(
            "tmpfs",
            target,
            "tmpfs",
            MountFlags::NODEV | MountFlags::NOSUID,
            Some(data.as_c_str()),
        )?;
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
        use rustix::mount::{MountFlags, mount_bind, mount_remount};
        mount_bind(source, target)?;
        if read_only {
            let r = mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "");
            if let Err(e) = r {
                let _ = self.unmount(target);
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn make_rshared(&self, target: &Path) -> io::Result<()> {
        use rustix::mount::{MountPropagationFlags, mount_bind, mount_change};
        if !self.mount_points()?.iter().any(|p| p == target) {
            mount_bind(target, target)?;
        }
        mount_change(
            target,
            MountPropagationFlags::SHARED | MountPropagationFlags::REC,
        )?;
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::NOFOLLOW)?;
        Ok(())
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(parse_mountinfo(&std::fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Records calls and keeps a mount table in memory; directories are left as they are.
#[derive(Debug, Default)]
pub struct FakeMounter {
    pub calls: Mutex<Vec<String>>,
    table: Mutex<BTreeSet<PathBuf>>,
    /// Calls whose target ends with this fail with EPERM.
    pub fail_on: Mutex<Option<String>>,
}

#[cfg(any(test, feature = "test-util"))]
impl FakeMounter {
    fn record(&self, call: String, target: &Path) -> io::Result<()> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        let fail = self.fail_on.lock().unwrap_or_else(|e| e.into_inner());
        if fail
            .as_deref()
            .is_some_and(|f| target.to_string_lossy().ends_with(f))
        {
            return Err(io::Error::from_raw_os_error(1));
        }
        Ok(())
    }

    fn add(&self, target: &Path) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.to_path_buf());
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Mounter for FakeMounter {
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> io::Result<()> {
        self.record(format!("tmpfs {} {size:?}", target.display()), target)?;
        self.add(target);
        Ok(())
    }

    fn bind(&self, source: &Path, target: &Path, read_only: bool) -> io::Result<()> {
        self.record(
            format!(
                "bind {} {} ro={read_only}",
                source.display(),
                target.display()
            ),
            target,
        )?;
        self.add(target);
        Ok(())
    }

    fn make_rshared(&self, target: &Path) -> io::Result<()> {
        self.record(format!("rshared {}", target.display()), target)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.record(format!("unmount {}", target.display()), target)?;
        let removed = self
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(target);
        if removed {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(22))
        }
    }

    fn mount_points(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let t = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                 40 22 0:35 / /var/lib/a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mountinfo(t),
            vec![PathBuf::from("/"), PathBuf::from("/var/lib/a b")]
        );
    }

    #[test]
    fn deepest_first() {
        let m = FakeMounter::default();
        for p in ["/r/pods/u/volumes/a", "/r/pods/u/volumes/a/b", "/r/other"] {
            m.add(Path::new(p));
        }
        let v = mount_points_under(&m, Path::new("/r/pods/u")).unwrap_or_default();
        assert_eq!(
            v,
            vec![
                PathBuf::from("/r/pods/u/volumes/a/b"),
                PathBuf::from("/r/pods/u/volumes/a")
            ]
        );
        assert!(m.unmount(Path::new("/r/nope")).is_err());
    }
}
