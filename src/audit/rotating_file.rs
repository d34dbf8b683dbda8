//! The audit file on disk: appends lines, rotates by size (`audit.jsonl` → `audit.jsonl.1` →
//! `.2` …, see [`super::log_files`]) and deletes rotated files beyond `max_files` or older than
//! `max_age`. The folder is created 0700 and every file is 0600. Used by the one writer thread
//! only, so nothing here locks.

use super::log_files;
use crate::support::{create_private_dir, open_private_append};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much of the log is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The current file is rotated before a line would take it past this size.
    pub max_size: u64,
    /// Rotated files kept besides the current one.
    pub max_files: usize,
    /// Rotated files last written longer ago than this are deleted.
    pub max_age: Duration,
}

/// An append-only file that rotates itself.
pub struct RotatingFile {
    path: PathBuf,
    retention: Retention,
    /// `None` after a write error: the next write opens the file again.
    out: Option<BufWriter<File>>,
    size: u64,
}

// === impl RotatingFile ===

impl RotatingFile {
    /// Opens (or creates) the log at `path`, creating its folder, and applies the retention.
    pub fn open(path: &Path, retention: Retention) -> io::Result<Self> {
        let mut file = Self {
            path: path.to_path_buf(),
            retention,
            out: None,
            size: 0,
        };
        file.reopen()?;
        file.prune(SystemTime::now());
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                create_private_dir(dir)?;
            }
        }
        let (file, loosened) = open_private_append(&self.path)?;
        if loosened {
            tracing::warn!(path = %self.path.display(), "the audit file was readable by others; made it private (0600)");
        }
        self.size = file.metadata()?.len();
        self.out = Some(BufWriter::new(file));
        Ok(())
    }

    /// Appends one line (`line` ends with a newline), rotating first when it would not fit.
    /// A line larger than `max_size` goes alone into a file of its own.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.out.is_none() {
            self.reopen()?;
        }
        if self.size > 0 && self.size + line.len() as u64 > self.retention.max_size {
            self.rotate()?;
        }
        let Some(out) = self.out.as_mut() else {
            return Err(io::Error::other("the audit file is not open"));
        };
        match out.write_all(line) {
            Ok(()) => {
                self.size += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.out = None;
                Err(e)
            }
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut().map(BufWriter::flush) {
            Some(Err(e)) => {
                self.out = None;
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// The current file becomes `.1`, `.1` becomes `.2` …; the oldest beyond `max_files` go.
    fn rotate(&mut self) -> io::Result<()> {
        self.flush()?;
        self.out = None;
        let keep = self.retention.max_files;
        let mut numbers = log_files::rotated_numbers(&self.path);
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        for n in numbers {
            let from = log_files::rotated(&self.path, n);
            if n >= keep {
                remove(&from);
            } else {
                std::fs::rename(&from, log_files::rotated(&self.path, n + 1))?;
            }
        }
        if keep == 0 {
            remove(&self.path);
        } else {
            std::fs::rename(&self.path, log_files::rotated(&self.path, 1))?;
        }
        self.reopen()?;
        self.prune(SystemTime::now());
        tracing::info!(path = %self.path.display(), "audit file rotated");
        Ok(())
    }

    /// Deletes rotated files beyond `max_files` and those last written before `now - max_age`.
    pub fn prune(&self, now: SystemTime) {
        let oldest_kept = now.checked_sub(self.retention.max_age);
        for n in log_files::rotated_numbers(&self.path) {
            let file = log_files::rotated(&self.path, n);
            let too_old = || {
                let modified = std::fs::metadata(&file).and_then(|m| m.modified());
                matches!((modified, oldest_kept), (Ok(m), Some(limit)) if m < limit)
            };
            if n > self.retention.max_files || too_old() {
                remove(&file);
            }
        }
    }
}

fn remove(file: &Path) {
    match std::fs::remove_file(file) {
        Ok(()) => tracing::info!(path = %file.display(), "old audit file deleted"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %file.display(), error = %e, "cannot delete an old audit file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: Retention = Retention {
        max_size: 20,
        max_files: 2,
        max_age: Duration::from_secs(3600),
    };

    fn contents(path: &Path) -> Vec<String> {
        log_files::oldest_first(path)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect()
    }

    #[test]
    fn files_rotate_by_size_and_only_max_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let mut file = RotatingFile::open(&path, RETENTION).unwrap();
        for line in [
            "a-123456\n",
            "b-123456\n",
            "c-123456\n",
            "d-123456\n",
            "e-123456\n",
            "f-123456\n",
            "g-123456\n",
        ] {
            file.write_line(line.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        // Two 9-byte lines fit in 20 bytes: ab | cd | ef | g, and only two rotated files stay.
        assert_eq!(
            contents(&path),
            ["c-123456\nd-123456\n", "e-123456\nf-123456\n", "g-123456\n"]
        );
        assert_eq!(log_files::oldest_first(&path)[0], log_files::rotated(&path, 2));

        // A line larger than max_size gets a file of its own rather than being refused.
        file.write_line(&[b'x'; 30]).unwrap();
        file.write_line(b"h\n").unwrap();
        file.flush().unwrap();
        let c = contents(&path);
        assert_eq!((c[0].as_str(), c[1].len(), c[2].as_str()), ("g-123456\n", 30, "h\n"));
    }

    #[test]
    fn rotated_files_older_than_max_age_are_deleted_and_the_current_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let file = RotatingFile::open(&path, RETENTION).unwrap();
        std::fs::write(log_files::rotated(&path, 1), "recent\n").unwrap();
        std::fs::write(log_files::rotated(&path, 2), "old\n").unwrap();
        std::fs::write(log_files::rotated(&path, 5), "beyond max_files\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(log_files::rotated(&path, 2))
            .unwrap()
            .set_modified(old)
            .unwrap();
        file.prune(SystemTime::now());
        assert_eq!(
            log_files::oldest_first(&path),
            [log_files::rotated(&path, 1), path.clone()]
        );
        // Even a current file past max_age is kept: it is still being written.
        file.prune(SystemTime::now() + Duration::from_secs(86400));
        assert_eq!(log_files::oldest_first(&path), [path]);
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_is_0700_and_files_0600_across_rotations() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/audit.jsonl");
        let mut file = RotatingFile::open(&path, RETENTION).unwrap();
        for _ in 0..3 {
            file.write_line(b"0123456789abcdef\n").unwrap();
        }
        file.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let files = log_files::oldest_first(&path);
        assert_eq!(files.len(), 3);
        assert!(files.iter().all(|f| mode(f) == 0o600));
    }

    #[test]
    fn a_deleted_file_is_recreated_after_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut file = RotatingFile::open(&path, RETENTION).unwrap();
        file.out = None; // as after a failed write
        file.write_line(b"after\n").unwrap();
        file.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
