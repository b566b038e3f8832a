//! The metric catalogue is the only place metric names are written, every
//! call site uses labels its entry declares, and what `/metrics` exports
//! carries HELP text.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::{get, simple_config, Origin, Spillway};

/// `ID -> (name, labels)` from `src/telemetry/catalog.rs`.
fn catalog(root: &Path) -> BTreeMap<String, (String, Vec<String>)> {
    let text = std::fs::read_to_string(root.join("src/telemetry/catalog.rs")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((id, rest)) = line.split_once(": ") else { continue };
        if !id.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') || !rest.contains('"') {
            continue;
        }
        let name = rest.split('"').nth(1).unwrap().to_string();
        let labels = rest
            .split_once('[')
            .and_then(|(_, l)| l.split_once(']'))
            .map(|(l, _)| {
                l.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
            })
            .unwrap_or_default();
        out.insert(id.to_string(), (name, labels));
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The argument text of every `counter!(…)`, `gauge!(…)`, `histogram!(…)`.
fn invocations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mac in ["counter!(", "gauge!(", "histogram!("] {
        let mut from = 0;
        while let Some(i) = text[from..].find(mac) {
            let start = from + i + mac.len();
            let prev = text[..from + i].chars().next_back();
            from = start;
            if prev.is_some_and(|c| c == '_' || c.is_alphanumeric()) {
                continue; // describe_counter! and friends
            }
            let mut depth = 1;
            let end = text[start..]
                .char_indices()
                .find_map(|(j, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(start + j)
                })
                .unwrap_or(text.len());
            out.push(text[start..end].to_string());
        }
    }
    out
}

#[test]
fn every_metric_is_named_through_the_catalogue_with_its_labels() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let catalog = catalog(&root);
    assert!(catalog.len() >= 25, "catalogue parse found {} entries", catalog.len());
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let mut problems = Vec::new();
    for file in files {
        if file.ends_with("telemetry/catalog.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(&root).unwrap().display();
        for args in invocations(&text) {
            let first = args.split(',').next().unwrap().trim();
            let Some(id) = first.strip_prefix("catalog::") else {
                problems.push(format!("{shown}: metric named {first} instead of a catalog:: constant"));
                continue;
            };
            let Some((name, labels)) = catalog.get(id) else {
                problems.push(format!("{shown}: catalog::{id} is not in the catalogue"));
                continue;
            };
            // A label key is the string literal just before a `=>`.
            let parts: Vec<&str> = args.split("=>").collect();
            let keys = parts[..parts.len().saturating_sub(1)].iter().filter_map(|part| {
                let part = part.trim_end();
                part.strip_suffix('"').and_then(|p| p.rsplit('"').next())
            });
            for key in keys {
                if !labels.iter().any(|l| l == key) {
                    problems.push(format!("{shown}: {name} used with label {key:?}, not in its declared {labels:?}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_metrics_carry_help_text() {
    let a = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&a], "", "")).await;
    assert_eq!(get(&sw.url("web", "/count")).await.unwrap().status, 200);
    let body = get(&sw.admin_url("/metrics")).await.unwrap().text();
    let families: Vec<&str> =
        body.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(families.contains(&"spillway_connections_accepted_total"), "{body}");
    assert!(families.contains(&"spillway_gate_decisions_total"), "{body}");
    for family in families {
        assert!(body.contains(&format!("# HELP {family} ")), "{family} has no HELP line:\n{body}");
    }
}
