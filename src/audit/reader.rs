//! Reading the audit log for `mxgate log`: every file of the log in time order (rotated ones
//! first, see [`super::log_files`]), each line parsed and matched against a [`Query`];
//! malformed lines are skipped and counted. [`follow`] then keeps reading the current file as
//! the writer appends to it, and moves on to the new file when it is rotated.

use super::log_files;
use super::query::Query;
use super::AuditRecord;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Receives each matching record with its line as written (no newline).
pub type Emit<'a> = dyn FnMut(&str, &AuditRecord) -> io::Result<()> + 'a;

/// Matches lines against the query and counts those that are not records.
pub struct Scan<'q> {
    query: &'q Query,
    pub malformed: u64,
}

// === impl Scan ===

impl<'q> Scan<'q> {
    pub fn new(query: &'q Query) -> Self {
        Self { query, malformed: 0 }
    }

    fn line(&mut self, line: &[u8], emit: &mut Emit<'_>) -> io::Result<()> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            return Ok(());
        }
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(record) if self.query.matches(&record) => emit(line, &record),
            Ok(_) => Ok(()),
            Err(_) => {
                self.malformed += 1;
                Ok(())
            }
        }
    }

    /// Every rotated file of the log at `current`, oldest first; files last written before
    /// `since` are skipped unread.
    fn rotated_files(&mut self, current: &Path, emit: &mut Emit<'_>) -> io::Result<()> {
        for path in log_files::oldest_first(current).iter().filter(|p| *p != current) {
            if self
                .query
                .since_ms
                .is_some_and(|since| modified_ms(path).is_some_and(|m| m < since))
            {
                continue;
            }
            match File::open(path) {
                Ok(file) => Tail::new(file)?.read_lines(self, emit, true)?,
                // Deleted by the writer's retention since it was listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            }
        }
        Ok(())
    }
}

/// Reads the whole log at `current` once.
pub fn read(current: &Path, scan: &mut Scan<'_>, emit: &mut Emit<'_>) -> io::Result<()> {
    scan.rotated_files(current, emit)?;
    match File::open(current) {
        Ok(file) => Tail::new(file)?.read_lines(scan, emit, true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", current.display()))),
    }
}

/// Reads the whole log, then keeps reading what is appended, checking every `poll`, until
/// `emit` fails or `keep_going` says to stop. A rotation (the current file renamed and a new
/// one created) is followed: the rest of the old file is read, then the new one from its start.
pub fn follow(
    current: &Path,
    scan: &mut Scan<'_>,
    emit: &mut Emit<'_>,
    poll: Duration,
    keep_going: &dyn Fn(&Scan<'_>) -> bool,
) -> io::Result<()> {
    scan.rotated_files(current, emit)?;
    let mut tail: Option<Tail> = None;
    while keep_going(scan) {
        if let Some(t) = tail.as_mut() {
            t.read_lines(scan, emit, false)?;
        }
        match std::fs::metadata(current) {
            Ok(now) if tail.as_ref().is_none_or(|t| t.identity != identity(&now)) => {
                if let Some(mut old) = tail.take() {
                    old.read_lines(scan, emit, true)?;
                }
                match File::open(current) {
                    Ok(file) => {
                        let mut t = Tail::new(file)?;
                        t.read_lines(scan, emit, false)?;
                        tail = Some(t);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            Ok(now) => {
                if let Some(t) = tail.as_mut().filter(|t| now.len() < t.position) {
                    t.restart()?; // truncated in place (`copytruncate`)
                }
            }
            Err(_) => {} // between a rotation's rename and the new file's creation
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

/// One file read up to where it has been written, keeping an unfinished last line.
struct Tail {
    file: File,
    identity: (u64, u64),
    position: u64,
    pending: Vec<u8>,
}

// === impl Tail ===

impl Tail {
    fn new(file: File) -> io::Result<Self> {
        let identity = identity(&file.metadata()?);
        Ok(Self {
            file,
            identity,
            position: 0,
            pending: Vec::new(),
        })
    }

    /// Passes every complete line read so far to `scan`; with `to_end`, an unfinished last
    /// line too (the file will not grow any more).
    fn read_lines(&mut self, scan: &mut Scan<'_>, emit: &mut Emit<'_>, to_end: bool) -> io::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            self.position += n as u64;
            self.pending.extend_from_slice(&chunk[..n]);
            let complete = self.pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in self.pending[..complete].split(|&b| b == b'\n') {
                scan.line(line, emit)?;
            }
            self.pending.drain(..complete);
        }
        if to_end && !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            scan.line(&line, emit)?;
        }
        Ok(())
    }

    fn restart(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.position = 0;
        self.pending.clear();
        Ok(())
    }
}

fn identity(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

fn modified_ms(path: &Path) -> Option<u64> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    fn line(event: AuditEvent, client: &str, time_ms: u64) -> String {
        let mut r = AuditRecord::new(event).client_id(client);
        r.time_ms = time_ms;
        serde_json::to_string(&r).unwrap() + "\n"
    }

    fn collect(current: &Path, query: &Query) -> (Vec<String>, u64) {
        let mut scan = Scan::new(query);
        let mut seen = Vec::new();
        read(current, &mut scan, &mut |_, r| {
            seen.push(r.client_id.clone().unwrap());
            Ok(())
        })
        .unwrap();
        (seen, scan.malformed)
    }

    #[test]
    fn rotated_files_are_read_first_and_malformed_lines_counted() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("audit.jsonl");
        let t = crate::support::now_ms();
        std::fs::write(
            log_files::rotated(&current, 2),
            line(AuditEvent::LoginSucceeded, "a", t),
        )
        .unwrap();
        let middle = line(AuditEvent::TokenIssued, "b", t) + "not json\n\n" + r#"{"event":"token_issued"}"# + "\n";
        std::fs::write(log_files::rotated(&current, 1), middle).unwrap();
        // The last line was cut by a crash: no newline; still read.
        let last = line(AuditEvent::Logout, "c", t);
        std::fs::write(&current, last.trim_end()).unwrap();
        assert_eq!(
            collect(&current, &Query::default()),
            (vec!["a".into(), "b".into(), "c".into()], 2)
        );

        let logins = Query {
            events: vec![AuditEvent::LoginSucceeded, AuditEvent::Logout],
            ..Query::default()
        };
        assert_eq!(collect(&current, &logins).0, ["a", "c"]);
    }

    #[test]
    fn rotated_files_last_written_before_since_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("audit.jsonl");
        let now = crate::support::now_ms();
        // A record inside the window in a file whose mtime says it is older: proof it was not read.
        std::fs::write(
            log_files::rotated(&current, 1),
            line(AuditEvent::Logout, "old-file", now),
        )
        .unwrap();
        File::options()
            .write(true)
            .open(log_files::rotated(&current, 1))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        std::fs::write(&current, line(AuditEvent::Logout, "new", now)).unwrap();
        let query = Query {
            since_ms: Some(now - 3_600_000),
            ..Query::default()
        };
        assert_eq!(collect(&current, &query).0, ["new"]);
        assert_eq!(collect(&current, &Query::default()).0, ["old-file", "new"]);
    }

    #[test]
    fn follow_sees_appended_records_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("audit.jsonl");
        let t = crate::support::now_ms();
        std::fs::write(&current, line(AuditEvent::LoginSucceeded, "first", t)).unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let (current, seen) = (current.clone(), seen.clone());
            std::thread::spawn(move || {
                let query = Query::default();
                let mut scan = Scan::new(&query);
                let mut emit = |_: &str, r: &AuditRecord| {
                    seen.lock().unwrap().push(r.client_id.clone().unwrap());
                    Ok(())
                };
                let done = |_: &Scan<'_>| seen.lock().unwrap().len() < 4;
                follow(&current, &mut scan, &mut emit, Duration::from_millis(10), &done).unwrap();
            })
        };
        let wait_for = |n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while seen.lock().unwrap().len() < n && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for(1);
        let mut f = File::options().append(true).open(&current).unwrap();
        // Written in two pieces: the half line is held back until its end arrives.
        let second = line(AuditEvent::TokenIssued, "second", t);
        f.write_all(&second.as_bytes()[..10]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        f.write_all(&second.as_bytes()[10..]).unwrap();
        wait_for(2);
        // Rotation: one more line into the old file after the rename, then a new file.
        std::fs::rename(&current, log_files::rotated(&current, 1)).unwrap();
        f.write_all(line(AuditEvent::TokenRefreshed, "third", t).as_bytes())
            .unwrap();
        std::fs::write(&current, line(AuditEvent::Logout, "fourth", t)).unwrap();
        wait_for(4);
        reader.join().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["first", "second", "third", "fourth"]);
    }
}
