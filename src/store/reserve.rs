//! Room kept for a full disk: a file of [`RESERVE_BYTES`] beside `rooftop.db` that the
//! history's writer deletes when SQLite reports the disk full, so the incident and the
//! page about it (and cleanup-ledger entries) can still be stored; it is made again once
//! the filesystem has room. Without it, a disk filled at once by another program leaves
//! the agent probing but unable to open an incident or queue a page.

use std::path::{Path, PathBuf};

/// How much room is kept: many incidents, pages and ledger entries' worth.
pub const RESERVE_BYTES: u64 = 2 * 1024 * 1024;
/// The reserve is made again only with this much free beside it, so that taking the
/// room back cannot be what fills the disk again.
const REMAKE_WITH_FREE: u64 = 4 * RESERVE_BYTES;
/// Its name in the state directory.
pub const RESERVE_FILE: &str = "rooftop.reserve";

/// Free bytes for an unprivileged writer and the filesystem's size, from statvfs.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid NUL-terminated string; `st` is written by statvfs.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// The reserve file of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub(crate) fn in_dir(state_dir: &Path) -> Reserve {
        Reserve {
            path: state_dir.join(RESERVE_FILE),
        }
    }

    /// Makes the reserve when it is missing and the disk has room for it and more.
    /// Best effort: a disk too full to hold it is what the self-check reports.
    pub(crate) fn make_if_room(&self) {
        if self.path.exists() {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if disk_space(dir).is_none_or(|(free, _)| free < REMAKE_WITH_FREE) {
            return;
        }
        // Written out, not sparse: the blocks must really be held.
        let zeros = vec![0u8; RESERVE_BYTES as usize];
        if std::fs::write(&self.path, zeros).is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Deletes the reserve, giving its room to the store; says so once per release.
    pub(crate) fn release(&self) {
        if std::fs::remove_file(&self.path).is_ok() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            tracing::warn!(
                "the state directory's disk is full ({}): released the {} MB reserve so incidents and pages can still be stored; make room on it",
                dir.display(),
                RESERVE_BYTES / (1024 * 1024)
            );
        }
    }
}

/// Whether SQLite failed for want of disk space.
pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_released_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reserve::in_dir(dir.path());
        r.make_if_room();
        let path = dir.path().join(RESERVE_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), RESERVE_BYTES);
        r.release();
        assert!(!path.exists());
        // Releasing twice is harmless.
        r.release();
        r.make_if_room();
        assert!(path.exists());
    }

    #[test]
    fn only_sqlite_full_is_a_full_disk() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(is_disk_full(&full));
        assert!(!is_disk_full(&rusqlite::Error::QueryReturnedNoRows));
    }
}
