//! Which files make up an audit log and in what order: the current file (`audit.jsonl`) and its
//! rotated predecessors, `audit.jsonl.1` the newest to `audit.jsonl.<max_files>` the oldest.
//! The writer (rotation, retention) and the reader (`mxgate log`) both name files only here.

use std::path::{Path, PathBuf};

/// The `n`th rotated file of the log at `current` (`n` ≥ 1; 1 is the newest).
pub fn rotated(current: &Path, n: usize) -> PathBuf {
    let mut name = current.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The numbers of the rotated files that exist next to `current`, in any order. Only names of
/// the form `<current>.<n>` count; anything else in the folder is left alone.
pub fn rotated_numbers(current: &Path) -> Vec<usize> {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let n = file_name.to_str()?.strip_prefix(name)?.strip_prefix('.')?;
            n.bytes().all(|b| b.is_ascii_digit()).then(|| n.parse().ok()).flatten()
        })
        .filter(|n| *n >= 1)
        .collect()
}

/// Every existing file of the log, oldest first, the current file last (when it exists).
pub fn oldest_first(current: &Path) -> Vec<PathBuf> {
    let mut numbers = rotated_numbers(current);
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let mut files: Vec<PathBuf> = numbers.into_iter().map(|n| rotated(current, n)).collect();
    if current.exists() {
        files.push(current.to_path_buf());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_are_listed_oldest_first_and_strangers_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("audit.jsonl");
        for name in [
            "audit.jsonl",
            "audit.jsonl.1",
            "audit.jsonl.10",
            "audit.jsonl.2",
            "audit.jsonl.x",
            "audit.jsonl.0",
            "audit.jsonl.2.gz",
            "other.1",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = oldest_first(&current)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["audit.jsonl.10", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]
        );
        std::fs::remove_file(&current).unwrap();
        assert_eq!(
            oldest_first(&current).len(),
            3,
            "no current file yet: only the rotated ones"
        );
    }
}
