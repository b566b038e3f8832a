//! Finds the line of a TOML file that defines a dotted key path such as
//! `pools.onprem.health.interval` or `route[1].primary`, so validation
//! errors can point at the line to fix. A small scanner, not a parser: it
//! tracks `[table]` and `[[array]]` headers and `key =` lines, and picks the
//! most specific line whose path is a prefix of the wanted key.

/// The 1-based line that best matches `key`, if any line does.
pub(super) fn line_of(source: &str, key: &str) -> Option<usize> {
    let mut table = String::new();
    let mut array_counts: Vec<(String, usize)> = Vec::new();
    let mut best: Option<(usize, usize)> = None; // (path length, line)
    for (n, raw_line) in source.lines().enumerate() {
        let line = strip_comment(raw_line).trim();
        let defined = if let Some(inner) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let name = normalize(inner);
            let index = bump(&mut array_counts, &name);
            table = format!("{name}[{index}]");
            table.clone()
        } else if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = normalize(inner);
            table.clone()
        } else if let Some((k, _)) = line.split_once('=') {
            let k = normalize(k);
            if k.is_empty() {
                continue;
            }
            if table.is_empty() {
                k
            } else {
                format!("{table}.{k}")
            }
        } else {
            continue;
        };
        if is_path_prefix(&defined, key) && best.is_none_or(|(len, _)| defined.len() > len) {
            best = Some((defined.len(), n + 1));
        }
    }
    best.map(|(_, line)| line)
}

fn bump(counts: &mut Vec<(String, usize)>, name: &str) -> usize {
    if let Some(entry) = counts.iter_mut().find(|(n, _)| n == name) {
        entry.1 += 1;
        entry.1
    } else {
        counts.push((name.to_string(), 0));
        0
    }
}

fn normalize(key: &str) -> String {
    key.split('.').map(|part| part.trim().trim_matches('"').trim_matches('\'')).collect::<Vec<_>>().join(".")
}

fn strip_comment(line: &str) -> &str {
    // Good enough for config files: a '#' outside a string starts a comment.
    let mut in_str = false;
    for (i, ch) in line.char_indices() {
        match ch {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn is_path_prefix(prefix: &str, key: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const SRC: &str = r#"# comment
[spill]
max_in_flight = 400
exit_after = "1s"  # too short

[pools.onprem]
endpoints = ["10.0.0.1:80", "bad"]
health = { path = "/h", interval = "0s" }

[[route]]
primary = "onprem"

[[route]]
primary = "nope"
"#;

    #[test]
    fn finds_plain_keys_and_tables() {
        assert_eq!(line_of(SRC, "spill.exit_after"), Some(4));
        assert_eq!(line_of(SRC, "spill.mode"), Some(2));
        assert_eq!(line_of(SRC, "pools.onprem"), Some(6));
    }

    #[test]
    fn finds_inline_tables_and_array_elements() {
        assert_eq!(line_of(SRC, "pools.onprem.health.interval"), Some(8));
        assert_eq!(line_of(SRC, "pools.onprem.endpoints[1]"), Some(7));
    }

    #[test]
    fn counts_arrays_of_tables() {
        assert_eq!(line_of(SRC, "route[0].primary"), Some(11));
        assert_eq!(line_of(SRC, "route[1].primary"), Some(14));
        assert_eq!(line_of(SRC, "route[1]"), Some(13));
    }

    #[test]
    fn unknown_key_has_no_line() {
        assert_eq!(line_of(SRC, "listener"), None);
    }
}
