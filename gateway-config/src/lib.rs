//! Configuration: a TOML file, overridden by `GATEWAY__SECTION__KEY` environment variables,
//! checked whole (every unknown or invalid key reported at once), then shared as `Arc<Config>`.
//!
//! `config/gateway.toml` documents every key with its default. Secrets can be given inline (for
//! demos), or by naming an environment variable (`*_env`) or a file (`*_file`) to read them from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variables with this prefix override file keys: `GATEWAY__SERVER__LISTEN`.
pub const ENV_PREFIX: &str = "GATEWAY__";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: Server,
    pub database: Database,
    pub embedded: Embedded,
    pub settlement: Settlement,
    pub dedup: Dedup,
    pub trace: Trace,
    pub retention: Retention,
    pub log: Log,
    pub demo: Demo,
    pub rest: Rest,
    pub providers: Vec<Provider>,
    pub payment_providers: Vec<PaymentProvider>,
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {}:\n  - {}", .path.display(), lines(.problems))]
pub struct Invalid {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  - ")
}

impl Config {
    /// Reads `path`, applies environment overrides, refuses unknown keys and validates.
    pub fn load(path: &Path) -> Result<Config, Invalid> {
        let invalid = |problems: Vec<Problem>| Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = format!("cannot read the file: {e}");
            invalid(vec![Problem::new(ProblemKind::Invalid, "", message)])
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let folder = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_in(&text, &env, folder).map_err(invalid)
    }

    /// Parses `text` with `env` overrides; the whole check without touching the process.
    /// Relative key files are taken from the working folder.
    pub fn from_toml(text: &str, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
        Config::from_toml_in(text, env, Path::new("."))
    }

    /// As [`Config::from_toml`], with relative key files (`public_key_file`) taken from
    /// `folder`, the configuration file's own.
    pub fn from_toml_in(
        text: &str,
        env: &[(String, String)],
        folder: &Path,
    ) -> Result<Config, Vec<Problem>> {
        let syntax = |message: String| Problem::new(ProblemKind::Syntax, "", message);
        let mut root: toml::Table = text.parse().map_err(|e| vec![syntax(format!("{e}"))])?;
        let mut problems = Vec::new();
        for (name, raw) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                if let Err(p) = override_key(&mut root, path, raw) {
                    problems.push(Problem::new(
                        ProblemKind::Invalid,
                        name,
                        format!("{name}: {p}"),
                    ));
                }
            }
        }
        let bad_dialects = take_unknown_dialects(&mut root, &mut problems);
        let mut unknown = BTreeSet::new();
        let config: Result<Config, _> =
            serde_ignored::deserialize(toml::Value::Table(root), |key| {
                unknown.insert(key.to_string());
            });
        problems.extend(unknown.into_iter().map(|k| {
            let message = format!("unknown key `{k}`");
            Problem::new(ProblemKind::UnknownKey, &k, message)
        }));
        match config {
            Err(e) => {
                problems.push(syntax(e.to_string()));
                Err(problems)
            }
            Ok(mut config) => {
                for provider in &mut config.providers {
                    for file in [
                        &mut provider.public_key_file,
                        &mut provider.previous_public_key_file,
                    ] {
                        if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                            *file = folder.join(&*file).display().to_string();
                        }
                    }
                }
                let already = |p: &Problem| {
                    p.kind == ProblemKind::Required
                        && bad_dialects
                            .iter()
                            .any(|i| p.key == format!("providers[{i}].dialect"))
                };
                problems.extend(config.problems().into_iter().filter(|p| !already(p)));
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(problems)
                }
            }
        }
    }
}

/// Sets `a__b__c` (lower-cased) in the table tree; the value is read as TOML when it parses
/// (numbers, booleans, arrays), else as a string.
fn override_key(root: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err("empty key segment".into());
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut table = root;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

mod problems;
mod providers;
mod rest_config;
mod secrets;
mod sections;

pub use problems::*;
pub use providers::*;
pub use rest_config::*;
pub use secrets::{weak_secret, DEMO_JWT_SECRET, PUBLIC_DEMO_SECRETS, SECRET_BYTES_MIN};
pub use sections::*;

#[cfg(test)]
mod tests;
