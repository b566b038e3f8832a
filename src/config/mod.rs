//! Configuration: the TOML file → `RawConfig` (serde, unknown keys refused)
//! → `Config` (validated, defaults applied, every problem reported at once).
//!
//! A `Config` is a value: reload builds a new one and swaps the runtime built
//! from it (see `app/reload.rs`); nothing mutates a `Config` in place.

mod duration;
mod lines;
pub(crate) mod raw;
mod types;
mod validate;
mod validate_access_log;
mod validate_control;
mod validate_coord;
mod validate_dr;
mod validate_listener;
mod validate_notify;
mod validate_pin;

use std::fmt;
use std::path::{Path, PathBuf};

pub use duration::parse as parse_duration;
pub use types::*;
pub(crate) use validate::check_webhook_url;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", .problems.len(), ProblemList(.problems))]
    Invalid { path: PathBuf, problems: Vec<LocatedProblem> },
}

/// A validation problem with the line of the file it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

struct ProblemList<'a>(&'a [LocatedProblem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// A validated config together with the text it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Short hex digest of the source text: identifies the active version.
    pub version: String,
    pub path: PathBuf,
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
    from_str(&text, path, base_dir)
}

/// Parses and validates config text; `path` is used in messages only and
/// relative file paths in the config resolve against `base_dir`.
pub fn from_str(text: &str, path: &Path, base_dir: &Path) -> Result<LoadedConfig, ConfigError> {
    let raw: raw::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })?;
    let config = validate::validate(raw, base_dir).map_err(|problems| ConfigError::Invalid {
        path: path.to_path_buf(),
        problems: problems
            .into_iter()
            .map(|p| LocatedProblem { line: lines::line_of(text, &p.key), key: p.key, message: p.message })
            .collect(),
    })?;
    Ok(LoadedConfig { config, version: digest(text), path: path.to_path_buf() })
}

fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
