//! Closing removed segments off the caller's thread.
//!
//! A segment removed by `Wal::truncate_before` is unlinked and its directory fsynced by the
//! caller; the file's blocks and its 16 MiB of cached pages are freed by the kernel only
//! when its last descriptor closes, which took 4-15 ms per segment on our machines, in the
//! engine's housekeeping cycle that writers wait on for memory. The closing happens in one
//! background thread of the process instead, fed by a channel.
//!
//! Invariants: only segments already unlinked (and their directory fsynced) are handed
//! over, so nothing a later open or a crash sees depends on when they close; a log on
//! another file system than the operating system's (the simulated one, whose seeded runs
//! must replay bit for bit) closes them in the caller's thread, as it does when the thread
//! cannot be started.

use std::sync::{Arc, OnceLock};

use crossbeam::channel::{Sender, unbounded};

use crate::segment::Segment;

/// The closing thread's queue, started on first use.
static CLOSER: OnceLock<Option<Sender<Vec<Arc<Segment>>>>> = OnceLock::new();

fn closer() -> Option<&'static Sender<Vec<Arc<Segment>>>> {
    CLOSER
        .get_or_init(|| {
            let (sender, receiver) = unbounded::<Vec<Arc<Segment>>>();
            let spawned = std::thread::Builder::new()
                .name("pagefork-wal-closer".to_owned())
                .spawn(move || {
                    for segments in receiver {
                        drop(segments);
                    }
                });
            match spawned {
                Ok(_) => Some(sender),
                Err(error) => {
                    tracing::warn!(%error, "no thread to close removed WAL segments in; closing them inline");
                    None
                }
            }
        })
        .as_ref()
}

/// Closes `segments` (unlinked, their directory fsynced) in the background when
/// `in_background`, else now.
pub(super) fn close_removed(segments: Vec<Arc<Segment>>, in_background: bool) {
    if !in_background {
        return;
    }
    if let Some(sender) = closer()
        && let Err(returned) = sender.send(segments)
    {
        drop(returned.into_inner());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;
    use std::time::{Duration, Instant};

    use crate::{Wal, WalConfig};

    /// This process's descriptors open on files in `dir`.
    fn open_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .map(|target| target.to_string_lossy().into_owned())
            .filter(|target| target.starts_with(&*dir.to_string_lossy()))
            .collect()
    }

    #[test]
    fn removed_segments_are_gone_at_once_and_their_descriptors_close_behind() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig {
            segment_size: 4096,
            ..WalConfig::default()
        };
        let wal = Wal::create(dir.path(), config).unwrap();
        let mut end = wal.appended_lsn();
        for record in 0..64u32 {
            end = wal.append(1, &[record as u8; 500]).unwrap().1;
        }
        let segment_files = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|entry| {
                    let name = entry.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".wal")
                })
                .count()
        };
        let before = segment_files(dir.path());
        let removed = wal.truncate_before(end).unwrap();
        assert!(removed >= 5, "{removed} of {before} segments removed");
        // Unlinked (and the directory fsynced) before it returns.
        assert_eq!(segment_files(dir.path()), before - removed);
        // Their descriptors close in the background: none is left open on a deleted file.
        let started = Instant::now();
        loop {
            let deleted: Vec<String> = open_in(dir.path())
                .into_iter()
                .filter(|target| target.ends_with(" (deleted)"))
                .collect();
            if deleted.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still open: {deleted:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(wal);
    }
}
