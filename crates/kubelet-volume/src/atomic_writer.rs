//! Upstream's atomic writer (`pkg/volume/util/atomic_writer.go`): the files live in a
//! timestamped directory, `..data` is a symlink to it, and each user-visible name is a symlink
//! through `..data`. An update writes a new directory and swaps `..data` with one rename, so a
//! reader sees the old set or the new set of files, never a mix.

use crate::payload::{FileProjection, Payload};
use crate::{Result, VolumeError};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Rejects absolute paths, `..` anywhere, a leading `..` name and over-long paths, as
/// upstream's `validatePath`.
pub fn validate_path(p: &str) -> Result<()> {
    let bad = |why: &str| Err(VolumeError::Invalid(format!("invalid path {p:?}: {why}")));
    if p.is_empty() {
        return bad("empty");
    }
    if p.len() > 4096 {
        return bad("must be less than or equal to 4096 characters");
    }
    if Path::new(p).is_absolute() {
        return bad("must be relative path");
    }
    if p.split('/').any(|seg| seg == "..") {
        return bad("must not contain '..'");
    }
    if p.starts_with("..") {
        return bad("must not start with '..'");
    }
    if p.split('/')
        .any(|seg| seg.len() > 255 || (seg.is_empty() && !p.ends_with('/')))
    {
        return bad("invalid path segment");
    }
    Ok(())
}

/// Whether `dir` holds exactly the payload; `extra_mode` is what ownership added to modes.
fn same_contents(dir: &Path, payload: &Payload, extra_mode: u32) -> bool {
    let mut seen = 0usize;
    for (rel, f) in payload {
        let p = dir.join(rel);
        match (fs::symlink_metadata(&p), fs::read(&p)) {
            (Ok(m), Ok(data)) if m.is_file() => {
                if data != f.data || m.permissions().mode() & 0o777 != (f.mode | extra_mode) & 0o777
                {
                    return false;
                }
            }
            _ => return false,
        }
        seen += 1;
    }
    // No extra files: count the regular files under dir.
    fn count(d: &Path) -> usize {
        fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count(&e.path()),
                Ok(t) if t.is_file() => 1,
                _ => 0,
            })
            .sum()
    }
    seen == count(dir)
}

fn top_level(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

fn timestamp_name() -> String {
    let now = jiff::Timestamp::now();
    format!("..{}", now.strftime("%Y_%m_%d_%H_%M_%S.%f"))
}

/// Group ownership for fsGroup, as upstream's `SetVolumeOwnership`: the group owns every
/// file, which gains group read (and write unless `read_only`); directories gain setgid.
pub fn set_ownership(dir: &Path, gid: u32, read_only: bool) -> Result<()> {
    let gid = rustix::fs::Gid::from_raw(gid);
    let mask = if read_only { 0o440 } else { 0o660 };
    fn walk(p: &Path, gid: rustix::fs::Gid, mask: u32) -> Result<()> {
        let m = fs::symlink_metadata(p).map_err(VolumeError::io("stat", p))?;
        if m.file_type().is_symlink() {
            // chmod would follow it to the file; the file itself is walked on its own.
            rustix::fs::chownat(
                rustix::fs::CWD,
                p,
                None,
                Some(gid),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| VolumeError::io("chown", p)(e.into()))?;
            return Ok(());
        }
        rustix::fs::chown(p, None, Some(gid)).map_err(|e| VolumeError::io("chown", p)(e.into()))?;
        let mut mode = m.permissions().mode() | mask;
        if m.is_dir() {
            mode |= 0o2000 | 0o110;
        }
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .map_err(VolumeError::io("chmod", p))?;
        if m.is_dir() {
            for e in fs::read_dir(p).map_err(VolumeError::io("reading", p))? {
                let e = e.map_err(VolumeError::io("reading", p))?;
                walk(&e.path(), gid, mask)?;
            }
        }
        Ok(())
    }
    walk(dir, gid, mask)
}

/// Writes `payload` into `target` (which must exist). Returns whether anything changed.
pub fn write(target: &Path, payload: &Payload, gid: Option<u32>) -> Result<bool> {
    for rel in payload.keys() {
        validate_path(rel)?;
    }
    let data_link = target.join(DATA);
    let old_dir = fs::read_link(&data_link).ok();
    if let Some(old) = &old_dir
        && same_contents(
            &target.join(old),
            payload,
            if gid.is_some() { 0o440 } else { 0 },
        )
    {
        return Ok(false);
    }

    let ts_name = timestamp_name();
    let ts_dir = target.join(&ts_name);
    fs::create_dir(&ts_dir).map_err(VolumeError::io("creating", &ts_dir))?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))
        .map_err(VolumeError::io("chmod", &ts_dir))?;
    let written = write_files(&ts_dir, payload).and_then(|()| match gid {
        Some(g) => set_ownership(&ts_dir, g, true),
        None => Ok(()),
    });
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }

    let tmp_link = target.join(DATA_TMP);
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&ts_name, &tmp_link)
        .map_err(VolumeError::io("symlink", &tmp_link))?;
    fs::rename(&tmp_link, &data_link).map_err(VolumeError::io("renaming", &tmp_link))?;

    // User-visible names: add the new ones, drop those no longer in the payload.
    let wanted: BTreeSet<&str> = payload.keys().map(|k| top_level(k)).collect();
    for name in &wanted {
        let link = target.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link)
                .map_err(VolumeError::io("symlink", &link))?;
        }
    }
    for e in fs::read_dir(target).map_err(VolumeError::io("reading", target))? {
        let e = e.map_err(VolumeError::io("reading", target))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || wanted.contains(name.as_str()) {
            continue;
        }
        // Only the symlinks the writer made; anything else is not ours to remove.
        if e.file_type().is_ok_and(|t| t.is_symlink()) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old_dir
        && old.components().count() == 1
        && matches!(old.components().next(), Some(Component::Normal(_)))
        && old != Path::new(&ts_name)
    {
        let _ = fs::remove_dir_all(target.join(old));
    }
    Ok(true)
}

fn write_files(dir: &Path, payload: &Payload) -> Result<()> {
    for (rel, FileProjection { data, mode }) in payload {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(VolumeError::io("creating", parent))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(&p)
            .map_err(VolumeError::io("creating", &p))?;
        f.write_all(data).map_err(VolumeError::io("writing", &p))?;
        // The umask must not narrow the requested mode.
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
            .map_err(VolumeError::io("chmod", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("krs-aw-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let _ = fs::create_dir_all(&d);
        d
    }

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let d = tmp("swap");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o400));
        assert!(write(&d, &p, None).unwrap_or(false));
        assert_eq!(fs::read_to_string(d.join("a")).unwrap_or_default(), "1");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap_or_default(), "2");
        let mode = fs::metadata(d.join("sub/b")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.unwrap_or(0), 0o400);
        assert!(fs::symlink_metadata(d.join("a")).is_ok_and(|m| m.is_symlink()));
        // Same payload: nothing to do, also when ownership widened the modes.
        assert!(!write(&d, &p, None).unwrap_or(true));
        let me = rustix::process::getgid().as_raw();
        assert!(write(&d, &p, Some(me)).unwrap_or(false));
        assert!(!write(&d, &p, Some(me)).unwrap_or(true));
        let mode = fs::metadata(d.join("sub/b")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.unwrap_or(0), 0o440);

        let first = fs::read_link(d.join(DATA)).unwrap_or_default();
        p.remove("sub/b");
        p.insert("a".into(), file("3", 0o644));
        assert!(write(&d, &p, None).unwrap_or(false));
        assert_eq!(fs::read_to_string(d.join("a")).unwrap_or_default(), "3");
        assert!(fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(first).exists(), "old data directory removed");
        let names: Vec<String> = fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn hostile_paths_refused() {
        for p in ["/etc/passwd", "../x", "a/../../x", "..data", ""] {
            assert!(validate_path(p).is_err(), "{p}");
        }
        assert!(validate_path("a/b.c").is_ok());
        let d = tmp("hostile");
        let mut p = Payload::new();
        p.insert("../escape".into(), file("x", 0o644));
        assert!(write(&d, &p, None).is_err());
        assert!(!d.parent().unwrap_or(&d).join("escape").exists());
        let _ = fs::remove_dir_all(&d);
    }
}
