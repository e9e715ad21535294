//! The per-run log: what the guest logged through the `log` import and printed on
//! stdout/stderr, bounded so a chatty generator cannot grow the host's memory or the
//! cached error.

use serde::Serialize;

/// Where a run-log line came from: a level of the `log` import (also used by the
/// host's own notes, such as a refused HTTP request), or a line of the guest's output.
/// Serialised in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `log` at trace level.
    Trace,
    /// `log` at debug level.
    Debug,
    /// `log` at info level.
    Info,
    /// `log` at warn level; copied to httpsd's own log at info.
    Warn,
    /// `log` at error level; copied to httpsd's own log at warn.
    Error,
    /// A line the guest wrote to stdout.
    Stdout,
    /// A line the guest wrote to stderr.
    Stderr,
}

/// Which of the guest's output streams a [`Capture`](super::Capture) collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

/// One kept line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Its level, or the output stream it was printed on.
    pub level: LogLevel,
    /// The text, secrets redacted; an output line has no trailing newline and invalid
    /// UTF-8 replaced.
    pub message: String,
}

/// Lines kept in arrival order until `max_bytes`; later lines are counted, not kept.
#[derive(Debug)]
pub struct RunLog {
    lines: Vec<LogLine>,
    bytes: u64,
    max_bytes: u64,
    dropped: u64,
    /// Generator name for the host's own tracing output.
    generator: String,
    partial_stdout: Vec<u8>,
    partial_stderr: Vec<u8>,
    /// Secret values of this run, replaced in every line before it is kept or logged.
    secrets: Vec<String>,
    /// Kept lines copied to httpsd's own log, and kept lines that were not.
    forwarded: u32,
    not_forwarded: u64,
}

/// What a secret value is replaced with wherever the run's words leave the sandbox.
pub const REDACTED: &str = "[secret]";

/// `text` with every occurrence of a secret value replaced, longest first (so a
/// secret that contains another is not half-replaced).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if !secret.is_empty() && out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

/// Secret values in the order [`redact`] wants them.
pub fn redaction_list(secrets: &[(String, String)]) -> Vec<String> {
    let mut values: Vec<String> = secrets
        .iter()
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}

impl RunLog {
    /// An empty log keeping up to `max_bytes` (each line costs its length plus one);
    /// `generator` tags the lines copied to httpsd's own log.
    pub fn new(max_bytes: u64, generator: String) -> Self {
        RunLog {
            lines: Vec::new(),
            bytes: 0,
            max_bytes,
            dropped: 0,
            generator,
            partial_stdout: Vec::new(),
            partial_stderr: Vec::new(),
            secrets: Vec::new(),
            forwarded: 0,
            not_forwarded: 0,
        }
    }

    /// Redacts these values (see [`redaction_list`]) from every line from now on.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Whether nothing more will be kept: later lines are only counted.
    fn is_full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    /// Records one line, if it fits in what is left of `max_bytes` (else it is only
    /// counted, before any copy is made), and forwards kept lines to the host's
    /// tracing, cut short and rate-limited ([`forward`]).
    pub fn push(&mut self, level: LogLevel, message: &str) {
        let size = message.len() as u64 + 1;
        if self.bytes + size > self.max_bytes {
            self.dropped += 1;
            return;
        }
        let message = if self.secrets.is_empty() {
            message.to_string()
        } else {
            redact(message, &self.secrets)
        };
        self.forward(level, &message);
        self.bytes += size;
        self.lines.push(LogLine { level, message });
    }

    /// Copies a kept line to httpsd's own log: at most [`FORWARD_PER_RUN`] lines per
    /// run, each cut to [`FORWARD_LINE_BYTES`], and no more than the process-wide
    /// budget allows, so that no generator can flood the operator's log (the whole run
    /// log is still in `?debug=true`).
    fn forward(&mut self, level: LogLevel, message: &str) {
        if self.forwarded >= FORWARD_PER_RUN || !FORWARD_BUDGET.take() {
            self.not_forwarded += 1;
            return;
        }
        self.forwarded += 1;
        let generator = self.generator.as_str();
        let message = cut(message, FORWARD_LINE_BYTES);
        match level {
            LogLevel::Error => tracing::warn!(target: "httpsd::guest", generator, "{message}"),
            LogLevel::Warn => tracing::info!(target: "httpsd::guest", generator, "{message}"),
            _ => tracing::debug!(target: "httpsd::guest", generator, ?level, "{message}"),
        }
    }

    /// Appends raw stdout/stderr bytes; complete lines become log lines. Linear in the
    /// bytes written, and once the log is full nothing is buffered any more.
    pub fn append_output(&mut self, stream: Stream, bytes: &[u8]) {
        let level = match stream {
            Stream::Stdout => LogLevel::Stdout,
            Stream::Stderr => LogLevel::Stderr,
        };
        if self.is_full() {
            self.dropped += bytes.iter().filter(|b| **b == b'\n').count() as u64;
            return;
        }
        // A guest writing one endless line must not grow the buffer without bound (a
        // line longer than the whole log is dropped anyway).
        let cap = self.max_bytes as usize;
        let mut buf = match stream {
            Stream::Stdout => std::mem::take(&mut self.partial_stdout),
            Stream::Stderr => std::mem::take(&mut self.partial_stderr),
        };
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let line = &rest[..pos];
            rest = &rest[pos + 1..];
            if buf.is_empty() {
                self.push_bytes(level, line);
            } else {
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&line[..line.len().min(room)]);
                self.push_bytes(level, &buf);
                buf.clear();
            }
        }
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&rest[..rest.len().min(room)]);
        match stream {
            Stream::Stdout => self.partial_stdout = buf,
            Stream::Stderr => self.partial_stderr = buf,
        }
    }

    /// [`push`](Self::push) for raw output: a line that cannot be kept is counted
    /// before it is decoded.
    fn push_bytes(&mut self, level: LogLevel, line: &[u8]) {
        if self.bytes + line.len() as u64 + 1 > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.push(level, &String::from_utf8_lossy(line));
    }

    /// Ends the run: flushes unterminated output and returns the lines and the count
    /// of dropped ones.
    pub fn finish(&mut self) -> (Vec<LogLine>, u64) {
        for (stream, level) in [
            (Stream::Stdout, LogLevel::Stdout),
            (Stream::Stderr, LogLevel::Stderr),
        ] {
            let buf = match stream {
                Stream::Stdout => std::mem::take(&mut self.partial_stdout),
                Stream::Stderr => std::mem::take(&mut self.partial_stderr),
            };
            if !buf.is_empty() {
                self.push_bytes(level, &buf);
            }
        }
        if self.not_forwarded > 0 || self.dropped > 0 {
            tracing::debug!(
                target: "httpsd::guest",
                generator = self.generator.as_str(),
                kept = self.lines.len(),
                dropped = self.dropped,
                not_copied_here = self.not_forwarded,
                "guest log bounded: lines past max_log_bytes were dropped, and only some kept lines were copied to this log (all kept lines are in ?debug=true)"
            );
        }
        (std::mem::take(&mut self.lines), self.dropped)
    }
}

/// Kept guest lines copied to httpsd's own log per run.
pub const FORWARD_PER_RUN: u32 = 20;
/// Longest guest line copied to httpsd's own log (longer ones are cut).
pub const FORWARD_LINE_BYTES: usize = 1024;

/// Guest lines per second the whole process copies to its own log (with a burst of
/// [`LogBudget::BURST`]): a hundred generators logging at once still make a log an
/// operator can read.
static FORWARD_BUDGET: LogBudget = LogBudget::new();

/// A token bucket over guest lines.
struct LogBudget {
    state: std::sync::Mutex<Option<(std::time::Instant, f64)>>,
}

impl LogBudget {
    const PER_SECOND: f64 = 50.0;
    const BURST: f64 = 200.0;

    const fn new() -> Self {
        LogBudget {
            state: std::sync::Mutex::new(None),
        }
    }

    fn take(&self) -> bool {
        let now = std::time::Instant::now();
        let mut state = crate::sync::lock(&self.state);
        let (last, tokens) = state.get_or_insert((now, Self::BURST));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * Self::PER_SECOND).min(Self::BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, saying how long it was.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [cut: {} bytes in all]", &text[..end], text.len()).into()
}

/// The last `n` stderr lines of a finished log, for a trap message ("panicked at ...").
pub fn stderr_tail(lines: &[LogLine], n: usize) -> Vec<&str> {
    let mut tail: Vec<&str> = lines
        .iter()
        .rev()
        .filter(|l| l.level == LogLevel::Stderr)
        // Rust's panic output ends with a hint that means nothing in a sandbox.
        .filter(|l| {
            !l.message.trim().is_empty() && !l.message.starts_with("note: run with `RUST_BACKTRACE")
        })
        .take(n)
        .map(|l| l.message.as_str())
        .collect();
    tail.reverse();
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_bounds_bytes() {
        let mut log = RunLog::new(20, "g".into());
        log.append_output(Stream::Stderr, b"panicked at x\npart");
        log.append_output(Stream::Stderr, b"ial\n");
        log.push(LogLevel::Info, "this line is far too long to keep");
        let (lines, dropped) = log.finish();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].message, "panicked at x");
        assert_eq!(dropped, 2);
    }

    #[test]
    fn secrets_are_redacted_from_every_line() {
        let secrets = redaction_list(&[
            ("short".into(), "tok".into()),
            ("long".into(), "tok-123".into()),
            ("empty".into(), String::new()),
        ]);
        let mut log = RunLog::new(1 << 10, "g".into()).with_secrets(secrets.clone());
        log.push(LogLevel::Info, "auth tok-123 then tok");
        log.append_output(Stream::Stdout, b"printed tok-123\n");
        let (lines, _) = log.finish();
        assert_eq!(lines[0].message, "auth [secret] then [secret]");
        assert_eq!(lines[1].message, "printed [secret]");
        assert_eq!(redact("no secrets here", &secrets), "no secrets here");
    }

    #[test]
    fn many_lines_in_one_write_cost_linear_time_and_a_full_log_only_counts() {
        let mut log = RunLog::new(1 << 10, "g".into());
        // 200,000 lines in one write: a buffer drained line by line would move
        // 10^11 bytes.
        log.append_output(Stream::Stdout, &b"x\n".repeat(200_000));
        let (lines, dropped) = log.finish();
        assert_eq!(lines.len(), 512);
        assert_eq!(dropped, 200_000 - 512);

        let mut log = RunLog::new(100, "g".into());
        log.append_output(Stream::Stdout, b"start ");
        log.append_output(Stream::Stdout, &[b'y'; 1 << 20]);
        assert_eq!(
            log.partial_stdout.len(),
            100,
            "the buffer stops at the log's size"
        );
        log.append_output(Stream::Stdout, b"\nnext\n");
        let (lines, _) = log.finish();
        assert_eq!(lines.len(), 1, "the endless line is dropped, the next kept");
        assert_eq!(lines[0].message, "next");
    }

    #[test]
    fn forwarding_is_bounded_per_run() {
        let mut log = RunLog::new(1 << 20, "g".into());
        for i in 0..1000 {
            log.push(LogLevel::Info, &format!("line {i}"));
        }
        assert_eq!(log.forwarded, FORWARD_PER_RUN);
        assert_eq!(log.not_forwarded, 1000 - u64::from(FORWARD_PER_RUN));
        assert_eq!(log.finish().0.len(), 1000, "every line is kept for debug");
        assert_eq!(cut("héllo", 2), "h... [cut: 6 bytes in all]");
        assert_eq!(cut("ok", 2), "ok");
    }
}
