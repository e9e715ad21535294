//! Reading the files a run needs (the component, its manifest, the secret files the
//! manifest names, static target files) without letting a file stall or flood the host.
//!
//! The target tree and the manifests are written by generator authors, not by the
//! operator who runs httpsd, so a file there is input like any other: a `[secrets]`
//! entry whose `file` is a FIFO would block the reading thread forever, a device would
//! never end, and a file may be far larger than anything a run should hold. So every
//! read here opens the file non-blocking, accepts only a regular file, refuses one
//! larger than the caller's cap before reading it (and stops at the cap if it grows
//! meanwhile), and runs on a blocking thread, never on the async runtime.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a file could not be read; the message names the file and the limit, never the
/// content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Nothing at this path.
    #[error("{0} does not exist")]
    NotFound(PathBuf),
    /// Refused without reading: a FIFO, socket, device or directory.
    #[error("{path} is not a regular file (a FIFO, a socket, a device or a directory)")]
    NotRegular {
        /// The file asked for.
        path: PathBuf,
    },
    /// Over the caller's cap, by its size or by what it grew to while being read.
    #[error("{path} is larger than the {limit} httpsd reads for it")]
    TooLarge {
        /// The file asked for.
        path: PathBuf,
        /// The cap, formatted for people (`1 KiB`).
        limit: String,
    },
    /// Not read within [`READ_TIMEOUT`]; the blocking thread may still be stuck on it.
    #[error("reading {path} took longer than {limit}")]
    TooSlow {
        /// The file asked for.
        path: PathBuf,
        /// [`READ_TIMEOUT`], formatted for people.
        limit: String,
    },
    /// Any other failure: permissions, an I/O error, text that is not UTF-8, a reader
    /// task that died.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file asked for.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// How long a read may take before the run gives up on it (a regular file on a hung
/// network mount). The blocking thread may stay stuck; the run does not.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `path` whole if it is a regular file of at most `max` bytes. Blocking: call it
/// from a blocking thread (see [`read`]).
pub fn read_blocking(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound(path.to_path_buf()),
        _ => ReadError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        limit: crate::units::format_size(max),
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte past the cap tells a file that grew since the stat.
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// [`read_blocking`] on a blocking thread, given up after [`READ_TIMEOUT`].
pub async fn read(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let owned = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || read_blocking(&owned, max));
    match tokio::time::timeout(READ_TIMEOUT, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ReadError::Io {
            path: path.to_path_buf(),
            message: format!("reader task failed: {join}"),
        }),
        Err(_) => Err(ReadError::TooSlow {
            path: path.to_path_buf(),
            limit: crate::units::format_duration(READ_TIMEOUT),
        }),
    }
}

/// [`read`] as UTF-8 text.
pub async fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read(path, max).await?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_path_buf(),
        message: "not UTF-8 text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_large_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // With no writer, a blocking open of the FIFO would never return.
        assert!(matches!(
            read_blocking(&fifo, 1 << 10),
            Err(ReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_blocking(Path::new("/dev/zero"), 1 << 10),
            Err(ReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_blocking(dir.path(), 1 << 10),
            Err(ReadError::NotRegular { .. })
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        let err = read_blocking(&big, 1024).unwrap_err();
        assert!(err.to_string().contains("larger than the 1 KiB"), "{err}");
        assert_eq!(read_blocking(&big, 2048).unwrap().len(), 2048);
        assert!(matches!(
            read_blocking(&dir.path().join("absent"), 1),
            Err(ReadError::NotFound(_))
        ));
    }
}
