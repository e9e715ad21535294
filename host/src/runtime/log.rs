//! The per-run log: what the guest logged through the `log` import and printed on
//! stdout/stderr, bounded so a chatty generator cannot grow the host's memory or the
//! cached error.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
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
        }
    }

    /// Redacts these values (see [`redaction_list`]) from every line from now on.
    pub fn with_secrets(mut self, secrets: Vec<String>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Records one line; forwards it to the host's tracing with the generator's name.
    pub fn push(&mut self, level: LogLevel, message: String) {
        let message = if self.secrets.is_empty() {
            message
        } else {
            redact(&message, &self.secrets)
        };
        let generator = self.generator.as_str();
        match level {
            LogLevel::Error => tracing::warn!(target: "httpsd::guest", generator, "{message}"),
            LogLevel::Warn => tracing::info!(target: "httpsd::guest", generator, "{message}"),
            _ => tracing::debug!(target: "httpsd::guest", generator, ?level, "{message}"),
        }
        let size = message.len() as u64 + 1;
        if self.bytes + size > self.max_bytes {
            self.dropped += 1;
            return;
        }
        self.bytes += size;
        self.lines.push(LogLine { level, message });
    }

    /// Appends raw stdout/stderr bytes; complete lines become log lines.
    pub fn append_output(&mut self, stream: Stream, bytes: &[u8]) {
        let level = match stream {
            Stream::Stdout => LogLevel::Stdout,
            Stream::Stderr => LogLevel::Stderr,
        };
        let cap = self.max_bytes as usize;
        let buf = match stream {
            Stream::Stdout => &mut self.partial_stdout,
            Stream::Stderr => &mut self.partial_stderr,
        };
        // A guest writing one endless line must not grow the buffer without bound.
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let mut complete = Vec::new();
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            complete.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        for line in complete {
            self.push(level, line);
        }
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
                self.push(level, String::from_utf8_lossy(&buf).into_owned());
            }
        }
        (std::mem::take(&mut self.lines), self.dropped)
    }
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
        log.push(LogLevel::Info, "this line is far too long to keep".into());
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
        log.push(LogLevel::Info, "auth tok-123 then tok".into());
        log.append_output(Stream::Stdout, b"printed tok-123\n");
        let (lines, _) = log.finish();
        assert_eq!(lines[0].message, "auth [secret] then [secret]");
        assert_eq!(lines[1].message, "printed [secret]");
        assert_eq!(redact("no secrets here", &secrets), "no secrets here");
    }
}
