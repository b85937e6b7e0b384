//! Process logging on stderr: text warnings for the command-line tools,
//! JSON lines for the webhook (one per admission decision).
//!
//! The webhook's lines are batched: a decision appends its line to a shared
//! buffer, which goes to stderr when it holds [`FLUSH_BYTES`], every
//! [`FLUSH_INTERVAL`], and when the [`LogGuard`] is dropped at exit. One
//! `write` per line was the largest single cost of a warm review (measured
//! in BENCHMARKS.md); `tracing-appender`'s background writer removes the
//! write from the request path but wakes its thread for nearly every line,
//! which cost as much on this 2-core machine. A line therefore reaches
//! stderr at most [`FLUSH_INTERVAL`] late, and a process killed with
//! SIGKILL loses at most that much.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// A buffer this full is written out by the thread that filled it.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// How often the buffer is written out regardless of size.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Installs the global subscriber. `serving`: JSON lines at info (the
/// webhook), otherwise text at warn (the CLI prints its own results).
/// `IMAGEGATE_LOG` (an `EnvFilter` directive) overrides the level. Keep the
/// guard until the process ends: dropping it writes what is buffered.
pub fn init(serving: bool) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMAGEGATE_LOG")
        .unwrap_or_else(|_| if serving { "info" } else { "warn" }.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if !serving {
        builder.with_writer(std::io::stderr).init();
        return LogGuard { lines: None };
    }
    let lines = BatchedWriter::new(std::io::stderr());
    lines.spawn_flusher(FLUSH_INTERVAL);
    builder
        .with_writer(lines.clone())
        .json()
        .flatten_event(true)
        .init();
    LogGuard { lines: Some(lines) }
}

/// Writes out buffered log lines when dropped.
pub struct LogGuard {
    lines: Option<BatchedWriter<std::io::Stderr>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(lines) = &self.lines {
            lines.flush_buffer();
        }
    }
}

/// Whole lines appended to a shared buffer, written to `out` in batches.
/// Each write from the subscriber is one formatted event, so lines from
/// concurrent reviews never interleave.
pub struct BatchedWriter<W> {
    shared: Arc<Mutex<Batch<W>>>,
}

struct Batch<W> {
    buffer: Vec<u8>,
    out: W,
}

impl<W> Clone for BatchedWriter<W> {
    fn clone(&self) -> Self {
        BatchedWriter {
            shared: self.shared.clone(),
        }
    }
}

impl<W: Write + Send + 'static> BatchedWriter<W> {
    pub fn new(out: W) -> Self {
        BatchedWriter {
            shared: Arc::new(Mutex::new(Batch {
                buffer: Vec::with_capacity(FLUSH_BYTES),
                out,
            })),
        }
    }

    /// A thread that writes the buffer out every `interval`. It holds only
    /// a weak reference: it ends once every writer is gone.
    pub fn spawn_flusher(&self, interval: Duration) {
        let weak = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("imagegate-log".into())
            .spawn(move || {
                while let Some(shared) = {
                    std::thread::sleep(interval);
                    weak.upgrade()
                } {
                    lock(&shared).write_out();
                }
            });
        if let Err(e) = spawned {
            // Lines still go out when the buffer fills and at exit.
            eprintln!("imagegate: cannot start the log flusher: {e}");
        }
    }

    /// Writes out everything buffered.
    pub fn flush_buffer(&self) {
        lock(&self.shared).write_out();
    }
}

fn lock<W>(shared: &Mutex<Batch<W>>) -> MutexGuard<'_, Batch<W>> {
    // A panic while holding the lock leaves whole lines behind: keep going.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl<W: Write> Batch<W> {
    fn write_out(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        // Nowhere to report a failing stderr: the lines are dropped rather
        // than kept growing.
        let _ = self.out.write_all(&self.buffer);
        let _ = self.out.flush();
        self.buffer.clear();
    }
}

impl<W: Write> Write for &BatchedWriter<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut batch = lock(&self.shared);
        batch.buffer.extend_from_slice(line);
        if batch.buffer.len() >= FLUSH_BYTES {
            batch.write_out();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Batched on purpose; see the module documentation.
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BatchedWriter<W> {
    type Writer = &'a BatchedWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer owns it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn lines_wait_for_a_flush_and_arrive_whole_and_in_order() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone());
        (&writer).write_all(b"one\n").unwrap();
        (&writer).write_all(b"two\n").unwrap();
        assert_eq!(sink.text(), "");
        writer.flush_buffer();
        assert_eq!(sink.text(), "one\ntwo\n");
        writer.flush_buffer();
        assert_eq!(sink.text(), "one\ntwo\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_writer() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone());
        let line = vec![b'x'; 1000];
        for _ in 0..(FLUSH_BYTES / 1000) {
            (&writer).write_all(&line).unwrap();
        }
        assert_eq!(sink.text(), "");
        (&writer).write_all(&line).unwrap();
        assert_eq!(sink.text().len(), (FLUSH_BYTES / 1000 + 1) * 1000);
    }

    #[test]
    fn the_flusher_writes_on_its_own_and_ends_with_the_writer() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone());
        writer.spawn_flusher(Duration::from_millis(10));
        (&writer).write_all(b"late\n").unwrap();
        // Wait for the flusher (bounded: a correctness check, not a timing one).
        for _ in 0..500 {
            if !sink.text().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.text(), "late\n");
        let weak = Arc::downgrade(&writer.shared);
        drop(writer);
        // The flusher may hold it for the length of one write, no longer.
        for _ in 0..500 {
            if weak.upgrade().is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the flusher keeps the writer alive");
    }

    #[test]
    fn concurrent_events_do_not_interleave() {
        let sink = Sink::default();
        let writer = BatchedWriter::new(sink.clone());
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let writer = writer.clone();
                s.spawn(move || {
                    let line: Vec<u8> = std::iter::repeat_n(b'a' + t, 999)
                        .chain(std::iter::once(b'\n'))
                        .collect();
                    for _ in 0..200 {
                        (&writer).write_all(&line).unwrap();
                    }
                });
            }
        });
        writer.flush_buffer();
        let text = sink.text();
        assert_eq!(text.lines().count(), 800);
        for line in text.lines() {
            assert_eq!(line.len(), 999);
            assert!(line.bytes().all(|b| b == line.as_bytes()[0]), "{line}");
        }
    }
}
