//! The log capability: the `httpsd:generator/log` import and the guest's stdout and
//! stderr, all captured into the run's bounded log ([`RunLog`]), so a `println!` or a
//! panic message is visible in `?debug=true`, and what httpsd's own log gets of it is
//! rate- and size-limited.

mod run_log;

pub use run_log::*;

use super::RunState;
use super::httpsd::generator::log::Level;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmStr};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A run's log as its capabilities write to it (the log import, stdout, stderr, the
/// HTTP policy's notes); the runtime reads it when the run ends.
#[derive(Clone)]
pub struct GuestLog(Arc<Mutex<RunLog>>);

impl GuestLog {
    /// Wraps the run's log, which the runtime also holds to read it at the end.
    pub fn new(log: Arc<Mutex<RunLog>>) -> Self {
        GuestLog(log)
    }

    /// The shared log, for a capability that writes notes of its own.
    pub fn shared(&self) -> Arc<Mutex<RunLog>> {
        self.0.clone()
    }

    /// A line of the guest's (a poisoned log is written all the same: `crate::sync`).
    fn push(&self, level: LogLevel, text: &str) {
        crate::sync::lock(&self.0).push(level, text);
    }

    /// The guest's stdout or stderr, appended to this log.
    pub fn capture(&self, stream: Stream) -> Capture {
        Capture {
            log: self.0.clone(),
            stream,
        }
    }
}

fn log_level(level: Level) -> LogLevel {
    match level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

impl super::httpsd::generator::log::Host for RunState {
    /// Not used: [`add_to_linker`] shadows it with [`log_line`], which reads the
    /// message in place instead of taking it as a `String` the host has already copied.
    fn log(&mut self, level: Level, message: String) {
        self.log.push(log_level(level), &message);
    }
}

/// The `log` import, reading the guest's message where it lies in linear memory
/// ([`WasmStr`]): a line the run log has no room for is counted without the host ever
/// copying it, so a guest logging a 100 MiB line costs the host nothing.
fn log_line(
    cx: StoreContextMut<'_, RunState>,
    (level, message): (Level, WasmStr),
) -> wasmtime::Result<()> {
    let text = message.to_str(&cx)?;
    cx.data().log.push(log_level(level), &text);
    Ok(())
}

/// Shadows the world's `log` import with [`log_line`].
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker
        .instance("httpsd:generator/log@0.1.0")?
        .func_wrap("log", log_line)?;
    Ok(())
}

/// The guest's stdout or stderr: appended to the run log, bounded, never blocking and
/// never failing (a guest that prints too much loses lines, not its run).
pub struct Capture {
    log: Arc<Mutex<RunLog>>,
    stream: Stream,
}

impl Capture {
    fn append(&self, bytes: &[u8]) {
        crate::sync::lock(&self.log).append_output(self.stream, bytes);
    }

    fn again(&self) -> Capture {
        Capture {
            log: self.log.clone(),
            stream: self.stream,
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CaptureWriter(self.again()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.again())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

struct CaptureWriter(Capture);

impl tokio::io::AsyncWrite for CaptureWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_log() -> (GuestLog, Arc<Mutex<RunLog>>) {
        let shared = Arc::new(Mutex::new(RunLog::new(1024, "g.wasm".into())));
        (GuestLog::new(shared.clone()), shared)
    }

    #[test]
    fn log_lines_and_stdout_land_in_the_run_log() {
        let (log, shared) = guest_log();
        log.push(log_level(Level::Warn), "careful");
        let mut out = log.capture(Stream::Stdout);
        out.write(Bytes::from_static(b"printed\n")).unwrap();
        let (lines, dropped) = shared.lock().unwrap().finish();
        assert_eq!(dropped, 0);
        let texts: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert!(texts.contains(&"careful"), "{texts:?}");
        assert!(texts.iter().any(|t| t.contains("printed")), "{texts:?}");
    }

    #[test]
    fn output_past_the_bound_is_dropped_not_refused() {
        let (log, shared) = guest_log();
        let mut err = log.capture(Stream::Stderr);
        for _ in 0..100 {
            assert!(err.write(Bytes::from(vec![b'x'; 100])).is_ok());
            assert!(err.check_write().unwrap() > 0, "never blocks the guest");
        }
        let (_, dropped) = shared.lock().unwrap().finish();
        assert!(dropped > 0);
    }
}
