//! Facts about the node and its process: identity, memory, descriptors, disk.

use std::path::Path;

use crate::store::Store;

/// How the node names itself in `rabbitmq_identity_info`.
#[derive(Debug, Clone)]
pub(crate) struct NodeIdentity {
    /// `warren@<hostname>`, as RabbitMQ's `rabbit@<hostname>`.
    pub(crate) node: String,
    /// The cluster's name: the node's, as a single RabbitMQ node reports it.
    pub(crate) cluster: String,
    /// An id made once and kept in the data directory, as RabbitMQ's
    /// `rabbitmq_cluster_permanent_id`.
    pub(crate) permanent_id: String,
}

/// The document the permanent cluster id is kept in.
const CLUSTER_ID_DOCUMENT: &str = "cluster-id";

impl NodeIdentity {
    /// The node's identity, making and saving the permanent id on first start.
    pub(crate) fn load(store: &Store) -> NodeIdentity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        let node = format!("warren@{host}");
        let stored = store
            .load_document(CLUSTER_ID_DOCUMENT)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|id| !id.is_empty());
        let permanent_id = match stored {
            Some(id) => id,
            None => {
                let id = format!("warren-cluster-id-{:032x}", rand::random::<u128>());
                if let Err(error) = store.save_document(CLUSTER_ID_DOCUMENT, id.as_bytes()) {
                    tracing::warn!(%error, "cannot save the cluster id; it changes at restart");
                }
                id
            }
        };
        NodeIdentity {
            cluster: node.clone(),
            node,
            permanent_id,
        }
    }
}

/// The broker process as the kernel sees it; None where it cannot be read.
pub(crate) struct Process {
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
}

/// Reads the process's resident set size, open descriptors and descriptor limit.
pub(crate) fn process() -> Process {
    // SAFETY: sysconf only reads a system constant.
    let page_size = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let resident_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur);
    Process {
        resident_bytes,
        open_fds,
        max_fds,
    }
}

/// Free bytes (for unprivileged users) on the file system holding `path`.
pub(crate) fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is all zeroes-valid plain data.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a struct we own.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}
