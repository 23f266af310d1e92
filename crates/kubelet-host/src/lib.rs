//! Host access behind the [`Host`] trait, so node-status logic can run on a [`FakeHost`].

pub mod cgroups;
pub mod fs;
pub mod iptables;
pub mod logind;
pub mod memcg;
pub mod mount;
pub mod sd_notify;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
#[cfg(any(test, feature = "test-util"))]
use std::sync::Mutex;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("statfs {path}: {source}")]
    Statfs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = HostError> = std::result::Result<T, E>;

pub use kubelet_core::machine::{FsStats, MachineInfo};

pub trait Host: Send + Sync + std::fmt::Debug + 'static {
    fn machine_info(&self) -> Result<MachineInfo>;
    fn fs_stats(&self, path: &Path) -> Result<FsStats>;
    /// The IPv4 address of the interface carrying the default route.
    fn default_route_ip(&self) -> Option<IpAddr>;
    /// The first address `name` resolves to (hosts file, then DNS) that is assigned here and
    /// is neither loopback, link-local nor multicast; IPv4 first. Blocks on the resolver.
    fn lookup_node_ip(&self, _name: &str) -> Option<IpAddr> {
        None
    }
    fn read_to_string(&self, path: &Path) -> Result<String>;
    /// Writes a small file in place (a sysctl under /proc/sys).
    fn write_string(&self, path: &Path, contents: &str) -> Result<()>;
    /// The device `path` is on (`st_dev`), to tell whether two paths share a filesystem.
    fn device_of(&self, _path: &Path) -> Option<u64> {
        None
    }
}

#[derive(Debug, Default)]
pub struct RealHost;

fn read(path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.into(),
        source,
    })
}

/// The huge page pools under `dir` (`hugepages-2048kB/nr_hugepages`): (page bytes, pages),
/// smallest page first.
pub fn hugepage_pools(dir: &Path) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let pages = std::fs::read_to_string(e.path().join("nr_hugepages"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((kb.checked_mul(1024)?, pages))
        })
        .collect();
    out.sort_unstable();
    out
}

/// Value of `key` in /proc/meminfo, in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut f = rest.split_whitespace();
        let v: u64 = f.next()?.parse().ok()?;
        Some(if f.next() == Some("kB") { v * 1024 } else { v })
    })
}

/// PRETTY_NAME from os-release text.
pub fn os_pretty_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

pub fn go_arch(machine: &str) -> String {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" | "armv6l" => "arm",
        "i686" | "i386" => "386",
        "s390x" => "s390x",
        "ppc64le" => "ppc64le",
        other => other,
    }
    .to_string()
}

/// Gateway of the default route in /proc/net/route text.
pub fn default_gateway(route: &str) -> Option<Ipv4Addr> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" {
            return None;
        }
        let g = u32::from_str_radix(f[2], 16).ok()?;
        Some(Ipv4Addr::from(g.to_le_bytes()))
    })
}

impl Host for RealHost {
    fn device_of(&self, path: &Path) -> Option<u64> {
        rustix::fs::stat(path).ok().map(|s| s.st_dev)
    }

    fn machine_info(&self) -> Result<MachineInfo> {
        let uname = rustix::system::uname();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        let meminfo = read("/proc/meminfo")?;
        let memory_bytes = meminfo_bytes(&meminfo, "MemTotal").ok_or(HostError::Parse {
            what: "/proc/meminfo",
            detail: "no MemTotal".into(),
        })?;
        let trim = |r: Result<String>| r.map(|s| s.trim().to_string()).unwrap_or_default();
        Ok(MachineInfo {
            num_cpus: cpus,
            memory_bytes,
            machine_id: trim(read("/etc/machine-id")),
            system_uuid: trim(read("/sys/class/dmi/id/product_uuid")),
            boot_id: trim(read("/proc/sys/kernel/random/boot_id")),
            kernel_version: uname.release().to_string_lossy().into_owned(),
            os_image: read("/etc/os-release")
                .ok()
                .as_deref()
                .and_then(os_pretty_name)
                .unwrap_or_else(|| "Linux".into()),
            architecture: go_arch(&uname.machine().to_string_lossy()),
            hostname: uname.nodename().to_string_lossy().trim().to_lowercase(),
            hugepages: hugepage_pools(Path::new("/sys/kernel/mm/hugepages")),
        })
    }

    fn fs_stats(&self, path: &Path) -> Result<FsStats> {
        let s = rustix::fs::statvfs(path).map_err(|e| HostError::Statfs {
            path: path.into(),
            source: e.into(),
        })?;
        Ok(FsStats {
            capacity_bytes: s.f_blocks.saturating_mul(s.f_frsize),
            available_bytes: s.f_bavail.saturating_mul(s.f_frsize),
            inodes: s.f_files,
            inodes_free: s.f_ffree,
            used_bytes: s
                .f_blocks
                .saturating_sub(s.f_bfree)
                .saturating_mul(s.f_frsize),
        })
    }

    fn default_route_ip(&self) -> Option<IpAddr> {
        // Connecting a UDP socket sends nothing; it only asks the kernel which source address
        // it would route from, toward the default gateway. A default route with no gateway
        // (`default dev eth0`) is taken toward any off-link address.
        let gw = default_gateway(&read("/proc/net/route").ok()?)?;
        let target = if gw.is_unspecified() {
            Ipv4Addr::new(8, 8, 8, 8)
        } else {
            gw
        };
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
        s.connect((target, 9)).ok()?;
        let ip = s.local_addr().ok()?.ip();
        (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
    }

    fn lookup_node_ip(&self, name: &str) -> Option<IpAddr> {
        use std::net::ToSocketAddrs;
        let addrs: Vec<IpAddr> = (name, 0).to_socket_addrs().ok()?.map(|a| a.ip()).collect();
        let usable = |ip: &&IpAddr| {
            let link_local = match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            };
            // Binding succeeds only for an address assigned to this host.
            !ip.is_loopback()
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && !link_local
                && UdpSocket::bind((**ip, 0)).is_ok()
        };
        addrs
            .iter()
            .filter(|ip| ip.is_ipv4())
            .find(usable)
            .or_else(|| addrs.iter().find(usable))
            .copied()
    }

    fn read_to_string(&self, path: &Path) -> Result<String> {
        std::fs::read_to_string(path).map_err(|source| HostError::Read {
            path: path.into(),
            source,
        })
    }

    fn write_string(&self, path: &Path, contents: &str) -> Result<()> {
        std::fs::write(path, contents).map_err(|source| HostError::Write {
            path: path.into(),
            source,
        })
    }
}

#[cfg(any(test, feature = "test-util"))]
/// A scriptable host for tests.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub info: MachineInfo,
    pub fs: FsStats,
    pub ip: Option<IpAddr>,
    pub files: Mutex<Vec<(PathBuf, String)>>,
}

#[cfg(any(test, feature = "test-util"))]
impl Host for FakeHost {
    fn machine_info(&self) -> Result<MachineInfo> {
        Ok(self.info.clone())
    }
    fn fs_stats(&self, _path: &Path) -> Result<FsStats> {
        Ok(self.fs)
    }
    fn default_route_ip(&self) -> Option<IpAddr> {
        self.ip
    }
    fn read_to_string(&self, path: &Path) -> Result<String> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| HostError::Read {
                path: path.into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
    }
    fn write_string(&self, path: &Path, contents: &str) -> Result<()> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.retain(|(p, _)| p != path);
        files.push((path.to_path_buf(), contents.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            meminfo_bytes(
                "MemTotal:       16384 kB\nMemAvailable: 10 kB\n",
                "MemTotal"
            ),
            Some(16384 * 1024)
        );
        assert_eq!(meminfo_bytes("MemTotal: 1 kB\n", "MemAvailable"), None);
        assert_eq!(
            os_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
        let route = "Iface\tDestination\tGateway\tFlags\neth0\t00000000\t010200C0\t0003\n";
        assert_eq!(default_gateway(route), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(default_gateway("Iface\n"), None);
    }

    #[test]
    fn real_host_reads_this_machine() {
        let h = RealHost;
        let m = h.machine_info().unwrap();
        assert!(m.num_cpus >= 1 && m.memory_bytes > 0);
        assert!(!m.kernel_version.is_empty());
        assert!(h.fs_stats(Path::new("/")).unwrap().capacity_bytes > 0);
    }
}
