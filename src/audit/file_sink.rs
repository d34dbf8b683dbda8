//! The audit sink of `serve`: records go through a bounded channel to one writer thread, which
//! appends them as JSON lines to the [`RotatingFile`] (and to standard output with
//! `audit.stdout`). A request never waits for the disk: when the channel is full the record is
//! dropped and counted, with a warning at most once a minute. The writer flushes after every
//! batch it takes from the channel, so a record is on disk within milliseconds of an idle
//! moment; an I/O error is logged (at most once a minute) and the writer goes on.

use super::rotating_file::{Retention, RotatingFile};
use super::{AuditRecord, AuditSink};
use crate::config::audit::AuditSettings;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Records waiting for the writer; more are dropped (and counted).
pub const CHANNEL_CAPACITY: usize = 10_000;

/// At most one warning per this long about dropped records, and one about I/O errors.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How often the writer applies `max_age` when no rotation does it.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The most records written between two flushes.
const MAX_BATCH: usize = 1000;

/// Hands records to the writer thread without ever blocking. Records travel boxed: the channel's
/// slots are allocated up front, and a pointer per slot keeps the queue's idle memory small
/// (10 000 slots: 80 KiB instead of ~2.5 MiB of records).
pub struct FileSink {
    sender: SyncSender<Box<AuditRecord>>,
    dropped: AtomicU64,
    drop_warning: Throttle,
}

// === impl FileSink ===

impl FileSink {
    /// A sink and the receiving end its writer reads, holding at most `capacity` records.
    fn channel(capacity: usize) -> (Self, Receiver<Box<AuditRecord>>) {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let sink = Self {
            sender,
            dropped: AtomicU64::new(0),
            drop_warning: Throttle::new(WARN_EVERY),
        };
        (sink, receiver)
    }

    /// Records dropped so far because the writer fell behind (or had stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AuditSink for FileSink {
    fn write(&self, record: &AuditRecord) {
        match self.sender.try_send(Box::new(record.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.drop_warning.ready() {
                    tracing::warn!(dropped, "audit records dropped: the audit writer is behind or stopped");
                }
            }
        }
    }
}

/// Opens the audit file of `settings` and installs the sink that writes it (once per
/// process). Nothing is installed when `audit.enabled` is false: records then only reach the
/// `mxgate::audit` log target. An audit file that cannot be opened stops start-up.
pub fn install_from_settings(settings: &AuditSettings) -> std::io::Result<()> {
    if !settings.enabled {
        tracing::info!("audit log off (audit.enabled: false)");
        return Ok(());
    }
    let retention = Retention {
        max_size: settings.max_size,
        max_files: settings.max_files,
        max_age: settings.max_age,
    };
    let file = RotatingFile::open(&settings.path, retention)?;
    let (sink, receiver) = FileSink::channel(CHANNEL_CAPACITY);
    let writer = Writer {
        file,
        stdout: settings.stdout,
        io_warning: Throttle::new(WARN_EVERY),
    };
    std::thread::Builder::new()
        .name("mxgate-audit".into())
        .spawn(move || writer.run(receiver))?;
    if super::install(Arc::new(sink)) {
        tracing::info!(path = %settings.path.display(), stdout = settings.stdout, "audit log");
    }
    Ok(())
}

/// The one thread that writes the file.
struct Writer {
    file: RotatingFile,
    stdout: bool,
    io_warning: Throttle,
}

// === impl Writer ===

impl Writer {
    fn run(mut self, receiver: Receiver<Box<AuditRecord>>) {
        let mut last_prune = Instant::now();
        loop {
            match receiver.recv_timeout(PRUNE_EVERY) {
                Ok(record) => {
                    self.write(&record);
                    for record in receiver.try_iter().take(MAX_BATCH) {
                        self.write(&record);
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.flush(),
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                self.file.prune(SystemTime::now());
                last_prune = Instant::now();
            }
        }
    }

    fn write(&mut self, record: &AuditRecord) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => return self.failed("encoding an audit record", &e),
        };
        line.push(b'\n');
        if let Err(e) = self.file.write_line(&line) {
            self.failed("writing the audit file", &e);
        }
        if self.stdout {
            // Standard output is line-buffered by Rust's `Stdout`; one write per line.
            if let Err(e) = std::io::stdout().lock().write_all(&line) {
                self.failed("writing audit records to standard output", &e);
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.file.flush() {
            self.failed("writing the audit file", &e);
        }
    }

    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        if self.io_warning.ready() {
            tracing::error!(path = %self.file.path().display(), error = %error, "{what} failed; audit records may be lost");
        }
    }
}

/// Lets something happen at most once per period (the first time at once), from any thread.
struct Throttle {
    period_ms: u64,
    /// When it last happened, in ms since `start` plus one (0: never).
    last: AtomicU64,
    start: Instant,
}

// === impl Throttle ===

impl Throttle {
    fn new(period: Duration) -> Self {
        Self {
            period_ms: period.as_millis() as u64,
            last: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Whether it may happen now (and then it counts as having happened).
    fn ready(&self) -> bool {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.period_ms {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;

    fn record(n: usize) -> AuditRecord {
        AuditRecord::new(AuditEvent::TokenIssued).client_id(format!("c{n}"))
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let (sink, receiver) = FileSink::channel(4);
        let started = Instant::now();
        for n in 0..10 {
            sink.write(&record(n));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "writing never waits for the writer"
        );
        assert_eq!(sink.dropped(), 6);
        let kept: Vec<String> = receiver.try_iter().filter_map(|r| r.client_id).collect();
        assert_eq!(
            kept,
            ["c0", "c1", "c2", "c3"],
            "the first records are kept, later ones dropped"
        );
        drop(receiver);
        sink.write(&record(11));
        assert_eq!(sink.dropped(), 7, "a stopped writer counts as a full channel");
    }

    #[test]
    fn the_writer_writes_json_lines_and_flushes_each_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let retention = Retention {
            max_size: 1 << 20,
            max_files: 1,
            max_age: Duration::from_secs(3600),
        };
        let (sink, receiver) = FileSink::channel(16);
        let writer = Writer {
            file: RotatingFile::open(&path, retention).unwrap(),
            stdout: false,
            io_warning: Throttle::new(WARN_EVERY),
        };
        let thread = std::thread::spawn(move || writer.run(receiver));
        sink.write(&record(1));
        sink.write(&record(2));
        let deadline = Instant::now() + Duration::from_secs(2);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 2 || Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let clients: Vec<String> = lines
            .lines()
            .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap().client_id.unwrap())
            .collect();
        assert_eq!(clients, ["c1", "c2"], "on disk without waiting for a flush interval");
        drop(sink);
        thread.join().unwrap();
    }

    #[test]
    fn the_throttle_lets_one_through_per_period() {
        let throttle = Throttle::new(Duration::from_millis(200));
        assert!(throttle.ready());
        assert!(!throttle.ready());
        std::thread::sleep(Duration::from_millis(250));
        assert!(throttle.ready());
        assert!(!throttle.ready());
    }
}
