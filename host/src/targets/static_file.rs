//! Static generators: `.json` and `.yaml`/`.yml` files in the Prometheus HTTP SD shape.
//! Re-read on every run, like the old tool, so an edit shows up on the next job.

use crate::model::TargetGroup;
use crate::runtime::files::{ReadError, read_blocking};
use crate::runtime::{ErrorKind, GenError, Limits};
use crate::validate::{check_groups, groups_from_value};
use std::path::Path;

/// Which parser a static file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A parse error is a `JSONDecodeError`.
    Json,
    /// A parse error is a `YAMLError`; an empty document is no groups.
    Yaml,
}

/// Parses and validates one static file. Parse errors keep the parser's line and
/// column; shape errors name the group.
pub fn load(path: &Path, format: Format, limits: &Limits) -> Result<Vec<TargetGroup>, GenError> {
    // Read only if it is a regular file no larger than the answer it may become.
    let bytes = read_blocking(path, limits.max_output_bytes).map_err(|e| {
        let kind = match e {
            ReadError::TooLarge { .. } => ErrorKind::InvalidOutput,
            _ => ErrorKind::LoadError,
        };
        let message = match e {
            ReadError::TooLarge { .. } => format!(
                "file is larger than the max_output_bytes limit of {}",
                crate::units::format_size(limits.max_output_bytes)
            ),
            other => other.to_string(),
        };
        GenError::host(kind, path, message)
    })?;
    parse_groups(&bytes, format, limits).map_err(|(kind, msg)| GenError::host(kind, path, msg))
}

/// Parses and validates a static file's bytes: what [`load`] does once the file is
/// read (and what the `static_file` fuzz target feeds arbitrary bytes).
pub fn parse_groups(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Vec<TargetGroup>, (ErrorKind, String)> {
    let value = parse(bytes, format)?;
    let groups = groups_from_value(value).map_err(|e| (ErrorKind::InvalidOutput, e.0))?;
    check_groups(&groups, limits.answer()).map_err(|e| (ErrorKind::InvalidOutput, e.0))?;
    Ok(groups)
}

fn parse(bytes: &[u8], format: Format) -> Result<serde_json::Value, (ErrorKind, String)> {
    match format {
        Format::Json => {
            serde_json::from_slice(bytes).map_err(|e| (ErrorKind::JsonDecode, e.to_string()))
        }
        Format::Yaml => {
            // An empty YAML document is no groups, as an empty list would be.
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(serde_json::Value::Array(Vec::new()));
            }
            serde_yaml_ng::from_slice(bytes).map_err(|e| (ErrorKind::Yaml, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn json_and_yaml() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits::default();
        let j = write(
            &dir,
            "a.json",
            r#"[{"targets": ["a:1"], "labels": {"job": "x"}}]"#,
        );
        assert_eq!(
            load(&j, Format::Json, &limits).unwrap()[0].targets,
            vec!["a:1"]
        );
        let y = write(
            &dir,
            "b.yaml",
            "- targets: ['b:1', 'b:2']\n  labels:\n    job: y\n",
        );
        assert_eq!(load(&y, Format::Yaml, &limits).unwrap()[0].targets.len(), 2);

        let bad = write(&dir, "c.json", "[{\"targets\": [\"a:1\"]");
        let e = load(&bad, Format::Json, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::JsonDecode);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let bad = write(&dir, "d.yaml", "- targets: [unclosed\n");
        assert_eq!(
            load(&bad, Format::Yaml, &limits).unwrap_err().kind,
            ErrorKind::Yaml
        );
        let shape = write(
            &dir,
            "e.yaml",
            "- targets: ['a:1']\n  labels:\n    port: 9100\n",
        );
        let e = load(&shape, Format::Yaml, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidOutput);
        assert!(e.message.contains("port"), "{}", e.message);
    }
}
