//! Upstream's atomic writer (`pkg/volume/util/atomic_writer.go`): the files live in a
//! timestamped directory, `..data` is a symlink to it, and each user-visible name is a symlink
//! through `..data`. An update writes a new directory and swaps `..data` with one rename, so a
//! reader sees the old set or the new set of files, never a mix.
//!
//! A container may write into the volume while the kubelet works on it, so nothing here goes
//! by path: the target is opened once and every name below it is resolved from a descriptor
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. A planted symlink then makes an
//! operation fail (or a comparison differ) instead of leading the kubelet to a host file.

use crate::payload::{FileProjection, Payload};
use crate::{Result, VolumeError};
use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, chownat, fchmod, fchown,
    fstat, mkdirat, openat, openat2, readlinkat, renameat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;
use rustix::path::Arg;
use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// No symlink may be crossed at all, and nothing may resolve outside the starting directory.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// `NONBLOCK`: should a fifo get past the type check, opening it must not hang the kubelet.
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> VolumeError {
    let f = VolumeError::io(op, path);
    move |e| f(std::io::Error::from(e))
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn open_dir_beneath<P: Arg>(dir: BorrowedFd<'_>, rel: P) -> rustix::io::Result<OwnedFd> {
    openat2(dir, rel, DIR_FLAGS, Mode::empty(), RESOLVE)
}

/// Opens `name` in `dir` for reading if it is a regular file: checked before opening, so a
/// fifo or device is never opened, and after, in case it was swapped in between.
fn open_regular<P: Arg + Copy>(
    dir: BorrowedFd<'_>,
    name: P,
    beneath: bool,
) -> rustix::io::Result<Option<(OwnedFd, Stat)>> {
    if file_type(&statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?) != FileType::RegularFile {
        return Ok(None);
    }
    let fd = if beneath {
        openat2(dir, name, READ_FLAGS, Mode::empty(), RESOLVE)?
    } else {
        openat(dir, name, READ_FLAGS, Mode::empty())?
    };
    let st = fstat(&fd)?;
    Ok((file_type(&st) == FileType::RegularFile).then_some((fd, st)))
}

/// The names in `dir`, without `.` and `..`.
fn list(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for e in Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn child(path: &Path, name: &CString) -> PathBuf {
    path.join(OsStr::from_bytes(name.as_bytes()))
}

/// Removes `name` in `dir`, a directory with all it holds; symlinks are removed, not followed.
fn remove_tree<P: Arg + Copy>(dir: BorrowedFd<'_>, name: P) -> rustix::io::Result<()> {
    if file_type(&statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?) != FileType::Directory {
        return unlinkat(dir, name, AtFlags::empty());
    }
    let sub = open_dir_beneath(dir, name)?;
    for n in list(sub.as_fd())? {
        remove_tree(sub.as_fd(), n.as_c_str())?;
    }
    unlinkat(dir, name, AtFlags::REMOVEDIR)
}

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

/// A validated path's names, cleaned as `filepath.Join` does. The first must not be one of
/// the writer's own `..` names even after cleaning (`./..data/x`).
fn segments(p: &str) -> Result<Vec<&str>> {
    let segs: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    match segs.first() {
        None => Err(VolumeError::Invalid(format!(
            "invalid path {p:?}: no file name"
        ))),
        Some(first) if first.starts_with("..") => Err(VolumeError::Invalid(format!(
            "invalid path {p:?}: must not start with '..'"
        ))),
        Some(_) => Ok(segs),
    }
}

type Files<'a> = [(Vec<&'a str>, &'a FileProjection)];

/// Whether the data directory `old` holds exactly the payload; `extra_mode` is what
/// ownership added to modes. Nothing is followed: a symlink, fifo or device anywhere in it
/// makes it differ, so it is rewritten rather than trusted.
fn same_contents(root: BorrowedFd<'_>, old: &str, files: &Files<'_>, extra_mode: u32) -> bool {
    let Ok(dir) = open_dir_beneath(root, old) else {
        return false;
    };
    for (segs, f) in files {
        let Some((name, parents)) = segs.split_last() else {
            return false;
        };
        let parent = if parents.is_empty() {
            None
        } else {
            match open_dir_beneath(dir.as_fd(), parents.join("/")) {
                Ok(fd) => Some(fd),
                Err(_) => return false,
            }
        };
        let at = parent.as_ref().map_or(dir.as_fd(), |p| p.as_fd());
        let Ok(Some((fd, st))) = open_regular(at, *name, true) else {
            return false;
        };
        let len = f.data.len() as u64;
        if st.st_mode & 0o777 != (f.mode | extra_mode) & 0o777
            || u64::try_from(st.st_size).ok() != Some(len)
        {
            return false;
        }
        // Bounded: the file may grow while it is read.
        let mut data = Vec::with_capacity(f.data.len());
        if File::from(fd).take(len + 1).read_to_end(&mut data).is_err() || data != f.data {
            return false;
        }
    }
    count_files(dir.as_fd()) == Some(files.len())
}

/// Regular files under `dir`; `None` if it holds anything but files and directories.
fn count_files(dir: BorrowedFd<'_>) -> Option<usize> {
    let mut n = 0;
    for name in list(dir).ok()? {
        let st = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        match file_type(&st) {
            FileType::RegularFile => n += 1,
            FileType::Directory => n += count_files(open_dir_beneath(dir, &name).ok()?.as_fd())?,
            _ => return None,
        }
    }
    Some(n)
}

fn timestamp_name(now: jiff::Timestamp) -> String {
    format!("..{}", now.strftime("%Y_%m_%d_%H_%M_%S.%f"))
}

/// Group ownership for fsGroup, as upstream's `SetVolumeOwnership`: the group owns every
/// file, which gains group read (and write unless `read_only`); directories gain setgid.
/// `dir` is trusted up to its last name, which is not followed if it is a symlink.
pub fn set_ownership(dir: &Path, gid: u32, read_only: bool) -> Result<()> {
    let mask = if read_only { 0o440 } else { 0o660 };
    own(CWD, dir, false, dir, Gid::from_raw(gid), mask)
}

/// Gives `name` in `dir` to the group. `beneath` says `name` is a single name under an
/// already opened directory (the root is a caller's path, opened from the cwd).
fn own<P: Arg + Copy>(
    dir: BorrowedFd<'_>,
    name: P,
    beneath: bool,
    path: &Path,
    gid: Gid,
    mask: u32,
) -> Result<()> {
    let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io_err("stat", path))?;
    match file_type(&st) {
        // The link itself only; a chmod would reach its target, which may be a host file.
        FileType::Symlink => chownat(dir, name, None, Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err("chown", path)),
        FileType::Directory => {
            let fd = if beneath {
                open_dir_beneath(dir, name)
            } else {
                openat(dir, name, DIR_FLAGS, Mode::empty())
            }
            .map_err(io_err("opening", path))?;
            own_dir(fd.as_fd(), path, gid, mask)
        }
        FileType::RegularFile => {
            let Some((fd, st)) =
                open_regular(dir, name, beneath).map_err(io_err("opening", path))?
            else {
                return Ok(());
            };
            fchown(&fd, None, Some(gid)).map_err(io_err("chown", path))?;
            fchmod(&fd, Mode::from_raw_mode(st.st_mode | mask)).map_err(io_err("chmod", path))
        }
        // Fifos, sockets, devices: opening one could block or act on a device.
        _ => Ok(()),
    }
}

fn own_dir(fd: BorrowedFd<'_>, path: &Path, gid: Gid, mask: u32) -> Result<()> {
    let st = fstat(fd).map_err(io_err("stat", path))?;
    fchown(fd, None, Some(gid)).map_err(io_err("chown", path))?;
    fchmod(fd, Mode::from_raw_mode(st.st_mode | mask | 0o2000 | 0o110))
        .map_err(io_err("chmod", path))?;
    for name in list(fd).map_err(io_err("reading", path))? {
        own(fd, name.as_c_str(), true, &child(path, &name), gid, mask)?;
    }
    Ok(())
}

/// The directory `..data` names, if the writer could have made it: one name starting with
/// `..` other than its links. Anything else is neither compared against nor removed.
fn current_data_dir(root: BorrowedFd<'_>) -> Option<String> {
    let name = readlinkat(root, DATA, Vec::new())
        .ok()?
        .into_string()
        .ok()?;
    let ours = name.starts_with("..")
        && name != ".."
        && !name.contains('/')
        && name != DATA
        && name != DATA_TMP;
    ours.then_some(name)
}

/// Writes `payload` into `target` (which must exist), in a data directory named after `now`.
/// Returns whether anything changed.
pub fn write(
    target: &Path,
    payload: &Payload,
    gid: Option<u32>,
    now: jiff::Timestamp,
) -> Result<bool> {
    let mut files = Vec::with_capacity(payload.len());
    for (rel, f) in payload {
        validate_path(rel)?;
        files.push((segments(rel)?, f));
    }
    // Opened once; everything below is relative to it.
    let root = openat(CWD, target, DIR_FLAGS, Mode::empty()).map_err(io_err("opening", target))?;
    let root = root.as_fd();
    let old_dir = current_data_dir(root);
    if let Some(old) = &old_dir
        && same_contents(root, old, &files, if gid.is_some() { 0o440 } else { 0 })
    {
        return Ok(false);
    }

    let ts_name = timestamp_name(now);
    let ts_path = target.join(&ts_name);
    mkdirat(root, ts_name.as_str(), Mode::from_raw_mode(0o755))
        .map_err(io_err("creating", &ts_path))?;
    if let Err(e) = fill(root, &ts_name, &ts_path, &files, gid) {
        let _ = remove_tree(root, ts_name.as_str());
        return Err(e);
    }

    // `..data_tmp` is the writer's name: whatever is there is a leftover or planted.
    let tmp_path = target.join(DATA_TMP);
    let _ = remove_tree(root, DATA_TMP);
    if let Err(e) = symlinkat(ts_name.as_str(), root, DATA_TMP) {
        let _ = remove_tree(root, ts_name.as_str());
        return Err(io_err("symlink", &tmp_path)(e));
    }
    if let Err(e) = renameat(root, DATA_TMP, root, DATA) {
        let _ = unlinkat(root, DATA_TMP, AtFlags::empty());
        let _ = remove_tree(root, ts_name.as_str());
        return Err(io_err("renaming", &tmp_path)(e));
    }

    // User-visible names: add the new ones, drop those no longer in the payload.
    let wanted: BTreeSet<&str> = files
        .iter()
        .filter_map(|(s, _)| s.first().copied())
        .collect();
    for name in &wanted {
        let link = target.join(name);
        match statat(root, *name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => symlinkat(format!("{DATA}/{name}").as_str(), root, *name)
                .map_err(io_err("symlink", &link))?,
            Err(e) => return Err(io_err("stat", &link)(e)),
        }
    }
    for name in list(root).map_err(io_err("reading", target))? {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"..") || std::str::from_utf8(bytes).is_ok_and(|s| wanted.contains(s))
        {
            continue;
        }
        // Only the symlinks the writer made; anything else is not ours to remove.
        if statat(root, &name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| file_type(&st) == FileType::Symlink)
        {
            let _ = unlinkat(root, &name, AtFlags::empty());
        }
    }
    if let Some(old) = old_dir
        && old != ts_name
    {
        let _ = remove_tree(root, old.as_str());
    }
    Ok(true)
}

/// Fills the new data directory `ts_name` under `root`.
fn fill(
    root: BorrowedFd<'_>,
    ts_name: &str,
    ts_path: &Path,
    files: &Files<'_>,
    gid: Option<u32>,
) -> Result<()> {
    let dir = open_dir_beneath(root, ts_name).map_err(io_err("opening", ts_path))?;
    fchmod(&dir, Mode::from_raw_mode(0o755)).map_err(io_err("chmod", ts_path))?;
    for (segs, FileProjection { data, mode }) in files {
        let p = ts_path.join(segs.join("/"));
        let Some((name, parents)) = segs.split_last() else {
            continue;
        };
        let parent = make_dirs(dir.as_fd(), parents, ts_path)?;
        let at = parent.as_ref().map_or(dir.as_fd(), |p| p.as_fd());
        let mode = Mode::from_raw_mode(*mode);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = openat2(at, *name, flags | OFlags::CLOEXEC, mode, RESOLVE)
            .map_err(io_err("creating", &p))?;
        let mut f = File::from(fd);
        f.write_all(data).map_err(VolumeError::io("writing", &p))?;
        // The umask must not narrow the requested mode.
        fchmod(&f, mode).map_err(io_err("chmod", &p))?;
    }
    if let Some(g) = gid {
        own_dir(dir.as_fd(), ts_path, Gid::from_raw(g), 0o440)?;
    }
    Ok(())
}

/// Makes and opens `parents` under `dir` one name at a time, each opened without following
/// a symlink before the next is made in it. `None` when there are no parents.
fn make_dirs(dir: BorrowedFd<'_>, parents: &[&str], base: &Path) -> Result<Option<OwnedFd>> {
    let mut cur: Option<OwnedFd> = None;
    let mut path = base.to_path_buf();
    for seg in parents {
        path.push(seg);
        let at = cur.as_ref().map_or(dir, |c| c.as_fd());
        match mkdirat(at, *seg, Mode::from_raw_mode(0o777)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io_err("creating", &path)(e)),
        }
        cur = Some(open_dir_beneath(at, *seg).map_err(io_err("opening", &path))?);
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A distinct time for each write (the data directory is named after it).
    fn now() -> jiff::Timestamp {
        static N: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        jiff::Timestamp::from_second(1_767_225_600 + n).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

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

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// The entries of `d`, sorted, with their contents for files.
    fn snapshot(d: &Path) -> Vec<(String, u32, Vec<u8>)> {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| {
                let p = e.path();
                let data = fs::read(&p).unwrap_or_default();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    mode_of(&p),
                    data,
                )
            })
            .collect();
        v.sort();
        v
    }

    /// `..data` names a real timestamped directory inside `d`.
    fn data_dir_inside(d: &Path) -> PathBuf {
        let name = fs::read_link(d.join(DATA)).unwrap();
        let s = name.to_str().unwrap();
        assert!(s.starts_with("..2") && !s.contains('/'), "{s}");
        assert!(fs::symlink_metadata(d.join(s)).unwrap().is_dir());
        d.join(s)
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let d = tmp("swap");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o400));
        assert!(write(&d, &p, None, now()).unwrap_or(false));
        assert_eq!(fs::read_to_string(d.join("a")).unwrap_or_default(), "1");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap_or_default(), "2");
        let mode = fs::metadata(d.join("sub/b")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.unwrap_or(0), 0o400);
        assert!(fs::symlink_metadata(d.join("a")).is_ok_and(|m| m.is_symlink()));
        // Same payload: nothing to do, also when ownership widened the modes.
        assert!(!write(&d, &p, None, now()).unwrap_or(true));
        let me = rustix::process::getgid().as_raw();
        assert!(write(&d, &p, Some(me), now()).unwrap_or(false));
        assert!(!write(&d, &p, Some(me), now()).unwrap_or(true));
        let mode = fs::metadata(d.join("sub/b")).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.unwrap_or(0), 0o440);

        let first = fs::read_link(d.join(DATA)).unwrap_or_default();
        p.remove("sub/b");
        p.insert("a".into(), file("3", 0o644));
        assert!(write(&d, &p, None, now()).unwrap_or(false));
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
        assert!(write(&d, &p, None, now()).is_err());
        assert!(!d.parent().unwrap_or(&d).join("escape").exists());
        // Only a cleaned path reveals these.
        for bad in ["./..data/x", ".", "./"] {
            let mut p = Payload::new();
            p.insert(bad.into(), file("x", 0o644));
            assert!(write(&d, &p, None, now()).is_err(), "{bad}");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn umask_does_not_narrow_modes() {
        let d = tmp("umask");
        let mut p = Payload::new();
        p.insert("x/y/z".into(), file("1", 0o666));
        assert!(write(&d, &p, None, now()).unwrap());
        assert_eq!(mode_of(&data_dir_inside(&d).join("x/y/z")), 0o666);
        assert_eq!(mode_of(&data_dir_inside(&d)), 0o755);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn symlink_planted_in_data_dir_is_not_followed() {
        let d = tmp("plant-sub");
        let out = tmp("plant-sub-out");
        let mut p = Payload::new();
        p.insert("a".into(), file("kubelet", 0o644));
        p.insert("sub/f".into(), file("1", 0o644));
        assert!(write(&d, &p, None, now()).unwrap());
        // The container swaps `sub` for a link to a host directory holding a copy of the
        // payload, and keeps the file count equal.
        let cur = data_dir_inside(&d);
        fs::remove_dir_all(cur.join("sub")).unwrap();
        symlink(&out, cur.join("sub")).unwrap();
        fs::write(cur.join("extra"), "x").unwrap();
        fs::write(out.join("f"), "1").unwrap();
        fs::set_permissions(out.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        let before = snapshot(&out);

        // Same payload: the planted tree must not pass for the kubelet's.
        assert!(
            write(&d, &p, None, now()).unwrap(),
            "planted data dir trusted"
        );
        let cur = data_dir_inside(&d);
        assert!(fs::symlink_metadata(cur.join("sub")).unwrap().is_dir());
        assert!(fs::symlink_metadata(cur.join("extra")).is_err());
        assert_eq!(fs::read_to_string(d.join("sub/f")).unwrap(), "1");

        // Updated payload under the planted link: written inside, nothing outside.
        fs::remove_dir_all(cur.join("sub")).unwrap();
        symlink(&out, cur.join("sub")).unwrap();
        fs::remove_file(d.join("sub")).unwrap();
        symlink(&out, d.join("sub")).unwrap();
        p.insert("sub/f".into(), file("2", 0o600));
        p.insert("sub/g/h".into(), file("3", 0o600));
        assert!(write(&d, &p, None, now()).unwrap());
        let cur = data_dir_inside(&d);
        assert_eq!(fs::read_to_string(cur.join("sub/f")).unwrap(), "2");
        assert_eq!(fs::read_to_string(cur.join("sub/g/h")).unwrap(), "3");
        assert_eq!(mode_of(&cur.join("sub/f")), 0o600);
        assert_eq!(snapshot(&out), before, "wrote outside the volume");
        let _ = fs::remove_dir_all(&d);
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn data_links_pointing_outside_are_replaced() {
        let d = tmp("plant-data");
        let out = tmp("plant-data-out");
        fs::write(out.join("a"), "1").unwrap();
        fs::set_permissions(out.join("a"), fs::Permissions::from_mode(0o644)).unwrap();
        let before = snapshot(&out);
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        assert!(write(&d, &p, None, now()).unwrap());
        let first = data_dir_inside(&d);

        // `..data` to a host directory that looks like the payload, `..data_tmp` to it too.
        fs::remove_file(d.join(DATA)).unwrap();
        symlink(&out, d.join(DATA)).unwrap();
        symlink(&out, d.join(DATA_TMP)).unwrap();
        assert!(
            write(&d, &p, None, now()).unwrap(),
            "host directory trusted as data"
        );
        let cur = data_dir_inside(&d);
        assert_ne!(cur, first);
        assert!(fs::symlink_metadata(d.join(DATA_TMP)).is_err());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(snapshot(&out), before);

        // `..data` escaping with `..`, `..data_tmp` a planted directory.
        let rel = Path::new("..").join(out.file_name().unwrap());
        fs::remove_file(d.join(DATA)).unwrap();
        symlink(&rel, d.join(DATA)).unwrap();
        fs::create_dir(d.join(DATA_TMP)).unwrap();
        symlink(&out, d.join(DATA_TMP).join("l")).unwrap();
        p.insert("a".into(), file("2", 0o644));
        assert!(write(&d, &p, None, now()).unwrap());
        data_dir_inside(&d);
        assert!(fs::symlink_metadata(d.join(DATA_TMP)).is_err());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "2");
        assert_eq!(snapshot(&out), before);
        let _ = fs::remove_dir_all(&d);
        let _ = fs::remove_dir_all(&out);
    }

    #[test]
    fn fifo_in_data_dir_does_not_hang() {
        let d = tmp("fifo");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        assert!(write(&d, &p, None, now()).unwrap());
        let cur = data_dir_inside(&d);
        fs::remove_file(cur.join("a")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            cur.join("a").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (d2, p2) = (d.clone(), p.clone());
        std::thread::spawn(move || tx.send(write(&d2, &p2, None, now()).ok()));
        let got = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(got, Ok(Some(true)), "write blocked on a fifo");
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn ownership_does_not_follow_symlinks() {
        let d = tmp("own");
        let out = tmp("own-out");
        fs::write(out.join("secret"), "s").unwrap();
        fs::set_permissions(out.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(d.join("f"), "f").unwrap();
        fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        symlink(out.join("secret"), d.join("link")).unwrap();
        symlink(&out, d.join("sub/dirlink")).unwrap();
        let fifo = d.join("fifo");
        let m = Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(CWD, fifo.as_path(), FileType::Fifo, m, 0).unwrap();

        let me = rustix::process::getgid().as_raw();
        set_ownership(&d, me, false).unwrap();
        assert_eq!(mode_of(&d.join("f")), 0o660);
        assert_eq!(mode_of(&d.join("sub")) & 0o2000, 0o2000);
        assert_eq!(mode_of(&d.join("fifo")), 0o600, "fifo skipped");
        // A symlink as the root is not followed either.
        set_ownership(&d.join("link"), me, false).unwrap();
        set_ownership(&d.join("sub/dirlink"), me, false).unwrap();
        assert_eq!(mode_of(&out.join("secret")), 0o600);
        assert_eq!(mode_of(&out), 0o700);
        let _ = fs::remove_dir_all(&d);
        let _ = fs::remove_dir_all(&out);
    }
}
