//! Typed generator failures (DESIGN §4) and their tracebacks.
//!
//! Every way a run can fail ends here as a [`GenError`]: the `error_type` string is the
//! one cached in `error:<full_path>` and shown by `?debug=true` and `httpsd check`.

use serde::Serialize;
use std::fmt;
use std::path::Path;
use wasmtime::{Trap, WasmBacktrace};

/// What kind of failure a run ended in. Callers branch on this (a `TimeoutError` is
/// worth a metric of its own, a `LoadError` is the operator's fault, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorKind {
    /// Fuel exhausted or the wall-clock deadline passed.
    #[serde(rename = "TimeoutError")]
    Timeout,
    /// The memory cap was hit.
    #[serde(rename = "MemoryError")]
    Memory,
    /// The generator returned its error variant.
    #[serde(rename = "GeneratorError")]
    Generator,
    /// Panic, unreachable, stack overflow or another trap.
    Trap,
    /// The output breaks the Prometheus contract or an output limit.
    InvalidOutput,
    /// Not a component, the wrong world, a bad manifest, an unreadable file.
    LoadError,
    /// A static `.json` file does not parse.
    #[serde(rename = "JSONDecodeError")]
    JsonDecode,
    /// A static `.yaml`/`.yml` file does not parse.
    #[serde(rename = "YAMLError")]
    Yaml,
    /// The run failed after the host refused an HTTP request to a host its manifest
    /// does not allow. Named by the host, so it reads the same whatever language the
    /// generator is in (JavaScript's `fetch` only says "NetworkError").
    #[serde(rename = "HttpDeniedError")]
    HttpDenied,
}

impl ErrorKind {
    /// The `error_type` string of the wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "TimeoutError",
            ErrorKind::Memory => "MemoryError",
            ErrorKind::Generator => "GeneratorError",
            ErrorKind::Trap => "Trap",
            ErrorKind::InvalidOutput => "InvalidOutput",
            ErrorKind::LoadError => "LoadError",
            ErrorKind::JsonDecode => "JSONDecodeError",
            ErrorKind::Yaml => "YAMLError",
            ErrorKind::HttpDenied => "HttpDeniedError",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed generator run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", self.error_type())]
pub struct GenError {
    /// What kind of failure: what callers branch on (metrics, the low-priority lane).
    pub kind: ErrorKind,
    /// What went wrong, in words; serialised as `error_message`. A guest's words are
    /// redacted of secrets and cut to a bounded size before they get here.
    pub message: String,
    /// Python-style traceback, most recent call last. Always present: when the guest
    /// has no frames to show (a parse error, a load error) it says where the failure
    /// was detected instead.
    pub traceback: String,
    /// The class name of the exception a `.py` generator raised (`ValueError`,
    /// `HTTPError`...), which is its `error_type` as prometheus-http-sd 3.x cached it;
    /// `kind` is then [`ErrorKind::Generator`] (or the limit it stood for).
    pub exception: Option<String>,
}

impl Serialize for GenError {
    /// `{"error_type", "error_message", "traceback"}`, the fields of the wire format's
    /// `error_details`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("GenError", 3)?;
        st.serialize_field("error_type", self.error_type())?;
        st.serialize_field("error_message", &self.message)?;
        st.serialize_field("traceback", &self.traceback)?;
        st.end()
    }
}

impl GenError {
    /// The `error_type` of the wire format: the exception's class name for a `.py`
    /// generator's own exception, else the kind's name.
    pub fn error_type(&self) -> &str {
        self.exception.as_deref().unwrap_or(self.kind.as_str())
    }

    /// An error detected by the host, outside any guest frame.
    pub fn host(kind: ErrorKind, generator: &Path, message: impl Into<String>) -> Self {
        let message = message.into();
        let traceback = format!(
            "Traceback (most recent call last):\n  File \"{}\", in <host>\n{}: {}",
            generator.display(),
            kind,
            message
        );
        GenError {
            kind,
            message,
            traceback,
            exception: None,
        }
    }

    /// The generator returned its error variant: no trap, so no guest frames; the
    /// traceback says where the error came from.
    pub fn returned(generator: &Path, message: impl Into<String>) -> Self {
        let message = message.into();
        let traceback = format!(
            "Traceback (most recent call last):\n  File \"{}\", in generate (returned its error)\n{}: {}",
            generator.display(),
            ErrorKind::Generator,
            message
        );
        GenError {
            kind: ErrorKind::Generator,
            message,
            traceback,
            exception: None,
        }
    }

    /// `original` told again as a `kind` error with `message`: the same frames, a new
    /// last line.
    pub fn guest_kind(kind: ErrorKind, message: String, original: GenError) -> Self {
        let frames = if original.exception.is_some() {
            // Python's last line names the exception as Python prints it
            // (`requests.exceptions.ConnectionError: ...`): the frames end before it.
            match original.traceback.trim_end().rfind('\n') {
                Some(at) => &original.traceback[..=at],
                None => "",
            }
        } else {
            let last = format!("{}: {}", original.kind, original.message);
            match original.traceback.rfind(&last) {
                Some(at) => &original.traceback[..at],
                None => original.traceback.as_str(),
            }
        };
        let traceback = format!("{frames}{kind}: {message}");
        GenError {
            kind,
            message,
            traceback,
            exception: None,
        }
    }

    /// An error with a traceback rendered from the guest's stack.
    pub fn guest(
        kind: ErrorKind,
        generator: &Path,
        message: impl Into<String>,
        backtrace: Option<&WasmBacktrace>,
    ) -> Self {
        let message = message.into();
        let traceback = render_traceback(kind, generator, &message, backtrace);
        GenError {
            kind,
            message,
            traceback,
            exception: None,
        }
    }
}

/// Renders a wasmtime backtrace in the style of the seeds: "Traceback (most recent call
/// last):", one `File` line per frame with the function name from the name section and
/// `file:line` where DWARF line tables exist, then `Type: message`.
pub fn render_traceback(
    kind: ErrorKind,
    generator: &Path,
    message: &str,
    backtrace: Option<&WasmBacktrace>,
) -> String {
    let mut out = String::from("Traceback (most recent call last):\n");
    let frames = backtrace.map(|bt| bt.frames()).unwrap_or(&[]);
    if frames.is_empty() {
        out.push_str(&format!(
            "  File \"{}\", in <no wasm frames captured>\n",
            generator.display()
        ));
    }
    // wasmtime lists the innermost frame first; Python tracebacks end with it.
    let lines: Vec<String> = frames
        .iter()
        .rev()
        .flat_map(|f| frame_lines(f, generator))
        .collect();
    // A runaway recursion repeats one frame dozens of times; say so once, as Python does.
    let mut i = 0;
    while i < lines.len() {
        let mut run = 1;
        while i + run < lines.len() && lines[i + run] == lines[i] {
            run += 1;
        }
        out.push_str(&lines[i]);
        if run > 3 {
            out.push_str(&lines[i]);
            out.push_str(&lines[i]);
            out.push_str(&format!(
                "  [Previous line repeated {} more times]\n",
                run - 3
            ));
        } else {
            for _ in 1..run {
                out.push_str(&lines[i]);
            }
        }
        i += run;
    }
    out.push_str(&format!("{kind}: {message}"));
    out
}

/// One frame as traceback lines. A frame whose DWARF shows inlined calls becomes one
/// line per inlined function, outermost first, so the author's own function appears
/// even when the instruction that failed was inlined from a library.
fn frame_lines(frame: &wasmtime::FrameInfo, generator: &Path) -> Vec<String> {
    let func = frame
        .func_name()
        .map(demangle)
        .unwrap_or_else(|| format!("<wasm function {}>", frame.func_index()));
    let mut lines: Vec<String> = frame
        .symbols()
        .iter()
        .rev()
        .filter_map(|sym| {
            let (file, line) = (sym.file()?, sym.line()?);
            let name = sym
                .name()
                .map(|n| strip_generics(&demangle(n)))
                .unwrap_or_else(|| func.clone());
            Some(format!("  File \"{file}\", line {line}, in {name}\n"))
        })
        .collect();
    if lines.is_empty() {
        let offset = frame
            .module_offset()
            .map(|o| format!(" at offset {o:#x}"))
            .unwrap_or_default();
        lines.push(format!(
            "  File \"{}\"{}, in {}\n",
            generator.display(),
            offset,
            func
        ));
    }
    lines
}

/// `collect<Map<Range<u32>, ...>>` -> `collect`: inlined library frames carry their
/// full generic arguments, which bury the line a reader is looking for. Names that
/// start with `<` (`<T as Trait>::f`) are kept whole.
fn strip_generics(name: &str) -> String {
    if name.starts_with('<') {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Rust names in the name section may be mangled (`_ZN...`, `_R...`); show them the way
/// the author wrote them, without the hash suffix.
fn demangle(name: &str) -> String {
    let demangled = format!("{:#}", rustc_demangle::demangle(name));
    if demangled.is_empty() {
        name.to_string()
    } else {
        demangled
    }
}

/// Sorts a wasmtime trap into an [`ErrorKind`] and a message naming the limit that was
/// hit. `memory_hit` says whether the store's limiter refused a memory growth during
/// the run: a guest that then aborts (Rust's allocation-failure path) should read as
/// `MemoryError`, not as the `unreachable` it executed.
pub fn classify_trap(
    error: &wasmtime::Error,
    memory_hit: Option<String>,
    fuel_limit: u64,
    timeout: std::time::Duration,
) -> (ErrorKind, String) {
    if let Some(detail) = memory_hit {
        return (
            ErrorKind::Memory,
            format!("Generator exceeded memory limit: {detail}"),
        );
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (
            ErrorKind::Timeout,
            format!("Generator exceeded timeout limit: fuel {fuel_limit}"),
        ),
        Some(Trap::Interrupt) => (
            ErrorKind::Timeout,
            format!(
                "Generator exceeded timeout limit: wall clock {}",
                crate::units::format_duration(timeout)
            ),
        ),
        Some(Trap::StackOverflow) => (
            ErrorKind::Trap,
            "wasm trap: call stack exhausted (stack overflow, likely unbounded recursion)"
                .to_string(),
        ),
        Some(trap) => (ErrorKind::Trap, trap.to_string()),
        // wasmtime's words for `set_max_component_handles` say nothing of what held them.
        None if format!("{error:#}").contains("store handle limit exceeded") => (
            ErrorKind::Trap,
            format!(
                "the generator held more than {} resources at once (outgoing HTTP requests, \
                 bodies, streams, header maps): store handle limit exceeded",
                super::limits::MAX_GUEST_HANDLES
            ),
        ),
        None => (ErrorKind::Trap, format!("{error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::strip_generics;

    #[test]
    fn generics_are_stripped_from_inlined_names() {
        assert_eq!(
            strip_generics("collect<Map<Range<u32>, F>, Vec<T>>"),
            "collect"
        );
        assert_eq!(strip_generics("{closure#0}<u32, T>"), "{closure#0}");
        assert_eq!(
            strip_generics("<a::B as c::D>::generate"),
            "<a::B as c::D>::generate"
        );
    }
}
