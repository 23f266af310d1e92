//! What the host reports about itself, as plain data for the node status decisions.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineInfo {
    pub num_cpus: u64,
    pub memory_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// GOARCH-style name: amd64, arm64, ...
    pub architecture: String,
    pub hostname: String,
    /// Huge page pools: (page size in bytes, pages), as the kernel's sysfs lists them.
    pub hugepages: Vec<(u64, u64)>,
}

/// One filesystem's size and use (upstream cadvisor `FsInfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
    /// Blocks in use (total less free), as upstream's `FsInfo.Usage`.
    pub used_bytes: u64,
}

/// An image the runtime holds, as the node status lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSummary {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
}
