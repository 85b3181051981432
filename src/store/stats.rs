//! What the message store counts for the metrics: fsync latency, writes, and its size on
//! disk. Written by the store's writer thread only; read by scrapes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync latency histogram's buckets, in seconds; a last bucket takes
/// everything slower.
pub const FSYNC_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The store's counters.
#[derive(Debug, Default)]
pub struct StoreStats {
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len() + 1],
    fsync_nanos: AtomicU64,
    writes: AtomicU64,
    write_bytes: AtomicU64,
    disk_bytes: AtomicU64,
    segments: AtomicU64,
}

/// The store's counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StoreSnapshot {
    /// fsyncs by [`FSYNC_BUCKETS`] (not cumulative).
    pub fsync_buckets: [u64; FSYNC_BUCKETS.len() + 1],
    /// Time spent in fsync.
    pub fsync_seconds: f64,
    /// Writes to segment files.
    pub writes: u64,
    /// Bytes written to segment files.
    pub write_bytes: u64,
    /// Bytes in the segment files on disk.
    pub disk_bytes: u64,
    /// Segment files on disk.
    pub segments: u64,
}

impl StoreSnapshot {
    /// fsyncs done.
    pub fn fsyncs(&self) -> u64 {
        self.fsync_buckets.iter().sum()
    }
}

/// Adds to a counter the writer thread alone writes (no locked instruction needed).
fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl StoreStats {
    /// Counts one fsync that took `took`.
    pub(super) fn fsynced(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = FSYNC_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(FSYNC_BUCKETS.len());
        if let Some(counter) = self.fsync_buckets.get(bucket) {
            add(counter, 1);
        }
        add(
            &self.fsync_nanos,
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    /// Counts a write of `bytes` to the active segment.
    pub(super) fn wrote(&self, bytes: u64) {
        add(&self.writes, 1);
        add(&self.write_bytes, bytes);
        add(&self.disk_bytes, bytes);
    }

    /// Sets the files on disk (at start, on segment roll and reclaim).
    pub(super) fn set_disk(&self, segments: u64, bytes: u64) {
        self.segments.store(segments, Ordering::Relaxed);
        self.disk_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Counts a segment file added (`added`) or removed with its `bytes`.
    pub(super) fn segment_changed(&self, added: bool, bytes: u64) {
        let segments = self.segments.load(Ordering::Relaxed);
        if added {
            self.segments.store(segments + 1, Ordering::Relaxed);
        } else {
            self.segments
                .store(segments.saturating_sub(1), Ordering::Relaxed);
            let disk = self.disk_bytes.load(Ordering::Relaxed);
            self.disk_bytes
                .store(disk.saturating_sub(bytes), Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StoreSnapshot {
        let mut fsync_buckets = [0; FSYNC_BUCKETS.len() + 1];
        for (total, counter) in fsync_buckets.iter_mut().zip(&self.fsync_buckets) {
            *total = counter.load(Ordering::Relaxed);
        }
        StoreSnapshot {
            fsync_buckets,
            fsync_seconds: self.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            writes: self.writes.load(Ordering::Relaxed),
            write_bytes: self.write_bytes.load(Ordering::Relaxed),
            disk_bytes: self.disk_bytes.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
        }
    }
}
