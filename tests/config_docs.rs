//! Keeps `config/README.md` in step with the code: every key the config
//! accepts (every `pub`/`pub(crate)` field of a `Raw*` struct in `src/config/raw.rs`, under
//! its `#[serde(rename = ...)]` name) must appear in the README as `` `key` ``,
//! or as the last part of a dotted path such as `` `tls.cert` ``.
//! Also validates every example file in `config/` with the real validator.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(struct, key)` for every `pub` field of every `Raw*` struct, keyed by the
/// name serde reads from the file.
fn raw_keys(source: &str) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    let mut current: Option<String> = None;
    let mut rename: Option<String> = None;
    for line in source.lines().map(str::trim) {
        // `pub(crate)` counts as `pub`: the structs are crate-visible only.
        let owned = line.strip_prefix("pub(crate) ").map(|rest| format!("pub {rest}"));
        let line = owned.as_deref().unwrap_or(line);
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            current = name.starts_with("Raw").then_some(name);
            rename = None;
            continue;
        }
        if line.starts_with('}') {
            current = None;
            rename = None;
            continue;
        }
        let Some(strukt) = &current else { continue };
        if line.starts_with("#[serde(") {
            if let Some(r) = serde_rename(line) {
                rename = Some(r);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub ") {
            if let Some((field, _)) = rest.split_once(':') {
                let field = field.trim().trim_start_matches("r#");
                keys.push((strukt.clone(), rename.take().unwrap_or_else(|| field.to_string())));
            }
        }
    }
    keys
}

/// The value of `rename = "..."` in a `#[serde(...)]` attribute line.
fn serde_rename(attr: &str) -> Option<String> {
    let after = attr.split("rename").nth(1)?;
    let after = after.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
    Some(after.split('"').next()?.to_string())
}

#[test]
fn every_raw_key_is_documented() {
    let raw = std::fs::read_to_string(root().join("src/config/raw.rs")).expect("read src/config/raw.rs");
    let readme = std::fs::read_to_string(root().join("config/README.md")).expect("read config/README.md");
    let keys = raw_keys(&raw);

    // Guard against the parser silently finding nothing (or missing renames).
    assert!(keys.len() >= 80, "found only {} keys in raw.rs; has its layout changed?", keys.len());
    for (strukt, key) in
        [("RawConfig", "listener"), ("RawDns", "type"), ("RawScale", "event"), ("RawRuntime", "drain_timeout")]
    {
        assert!(keys.iter().any(|(s, k)| s == strukt && k == key), "parser did not find {strukt}.{key}");
    }
    assert!(!keys.iter().any(|(_, k)| k == "record_type" || k == "listeners" || k == "events"), "renames not honoured");

    // Code spans of the README: the text between pairs of backticks.
    let spans: Vec<&str> = readme.split('`').skip(1).step_by(2).collect();
    let documented = |key: &str| spans.iter().any(|s| *s == key || s.ends_with(&format!(".{key}")));
    let missing: Vec<String> =
        keys.iter().filter(|(_, key)| !documented(key)).map(|(strukt, key)| format!("{strukt}.{key}")).collect();
    assert!(
        missing.is_empty(),
        "config/README.md does not document these keys (write them as `key` or `parent.key`): {missing:?}"
    );
}

#[test]
fn rename_attributes_are_read() {
    assert_eq!(serde_rename(r#"#[serde(default, rename = "listener")]"#).as_deref(), Some("listener"));
    assert_eq!(serde_rename(r#"#[serde(rename="type")]"#).as_deref(), Some("type"));
    assert_eq!(serde_rename("#[serde(default)]"), None);
    let keys = raw_keys(
        "pub struct RawX {\n    /// doc\n    #[serde(rename = \"type\")]\n    /// more doc\n    pub record_type: Option<String>,\n    pub ttl: u32,\n}\npub struct Other {\n    pub hidden: u8,\n}\n",
    );
    assert_eq!(keys, vec![("RawX".to_string(), "type".to_string()), ("RawX".to_string(), "ttl".to_string())]);
}

#[test]
fn every_example_config_is_valid() {
    let dir = root().join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read config/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected demo.toml, dc1.toml, dc2.toml in config/, found {files:?}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p: &PathBuf| spillway::config::load(Path::new(p)).err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
