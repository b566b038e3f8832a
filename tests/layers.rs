//! The layering rule, checked: every file under `src/` belongs to one layer
//! (the table in DESIGN.md between the `layers` markers), a file may import
//! only from its own layer or lower ones, and no two top-level modules import
//! each other, directly or through others.
//!
//! Imports are read from the source text: `use crate::…`, `use super::…`,
//! `use self::…`, uses of a module's own children (re-exports), and inline
//! `crate::…`/`super::…` paths. Code under `#[cfg(test)]` is not checked
//! (tests may reach across layers to build what they test).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A module path (`["upstream", "client"]`) and the file that defines it.
type ModPath = Vec<String>;

struct Tree {
    /// Module path → file (relative to `src/`, with `/` separators).
    modules: BTreeMap<ModPath, String>,
    /// File → its production source, `#[cfg(test)]` items removed.
    sources: BTreeMap<String, String>,
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/")
}

fn module_path(file: &str) -> ModPath {
    let no_ext = file.trim_end_matches(".rs");
    let mut segs: Vec<String> = no_ext.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
        segs.clear();
    }
    segs
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// A test-only child module: by name, or by the file a `#[path]` names.
enum TestChild {
    Name(String),
    Path(String),
}

/// Removes `#[cfg(test)]` items (a `mod x { … }`, a `fn`, a `use` line) and
/// returns the test-only child modules declared as `mod x;`.
fn strip_tests(text: &str) -> (String, Vec<TestChild>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut test_children = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "#[cfg(test)]" {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        // Skip further attributes (`#[path = …]`), then the item.
        i += 1;
        let mut path_attr = None;
        while i < lines.len() && lines[i].trim_start().starts_with("#[") {
            if let Some(p) = lines[i].trim().strip_prefix("#[path = \"") {
                path_attr = p.split('"').next().map(str::to_string);
            }
            i += 1;
        }
        if i >= lines.len() {
            break;
        }
        let item = lines[i].trim();
        if item.ends_with(';') {
            if let Some(p) = path_attr {
                test_children.push(TestChild::Path(p));
            } else if let Some(name) = item.strip_prefix("mod ").or_else(|| item.strip_prefix("pub mod ")) {
                test_children.push(TestChild::Name(name.trim_end_matches(';').trim().to_string()));
            }
            i += 1;
            continue;
        }
        let mut depth = 0i32;
        let mut opened = false;
        while i < lines.len() {
            for c in lines[i].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            i += 1;
            if opened && depth <= 0 {
                break;
            }
        }
    }
    (out, test_children)
}

fn load(root: &Path) -> Tree {
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut modules = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    let mut test_files: BTreeSet<String> = BTreeSet::new();
    for p in &files {
        let file = rel(root, p);
        if file.starts_with("bin/") {
            // Binaries are crates of their own; they see only the public API.
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        let (prod, tests) = strip_tests(&text);
        let mp = module_path(&file);
        for t in tests {
            match t {
                TestChild::Name(name) => {
                    let mut child = mp.clone();
                    child.push(name);
                    test_only.insert(child);
                }
                TestChild::Path(p) => {
                    let dir = Path::new(&file).parent().unwrap_or(Path::new(""));
                    test_files.insert(dir.join(p).to_string_lossy().replace('\\', "/"));
                }
            }
        }
        modules.insert(mp, file.clone());
        sources.insert(file, prod);
    }
    for mp in &test_only {
        if let Some(file) = modules.remove(mp) {
            sources.remove(&file);
        }
    }
    modules.retain(|_, f| !test_files.contains(f));
    sources.retain(|f, _| !test_files.contains(f));
    Tree { modules, sources }
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, body: &str, out: &mut Vec<String>) {
    let body = body.trim();
    if let Some(open) = body.find('{') {
        let head = format!("{prefix}{}", &body[..open]);
        let inner = &body[open + 1..body.rfind('}').unwrap_or(body.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&head, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&head, &inner[start..], out);
    } else if !body.is_empty() {
        let path = body.split(" as ").next().unwrap().trim();
        out.push(format!("{prefix}{path}"));
    }
}

/// Every path this source names that may leave its module.
fn paths(src: &str) -> Vec<String> {
    let code: String = src.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
    let mut out = Vec::new();
    // `use` statements, possibly spanning lines.
    let mut rest = code.as_str();
    while let Some(pos) = find_use(rest) {
        let stmt_start = &rest[pos..];
        let end = stmt_start.find(';').unwrap_or(stmt_start.len());
        let stmt = &stmt_start[stmt_start.find("use ").unwrap() + 4..end];
        let stmt: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
        expand("", &stmt, &mut out);
        rest = &stmt_start[end..];
    }
    // Inline `crate::…` / `super::…` paths anywhere.
    for anchor in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let start = from + i;
            let prev = code[..start].chars().next_back();
            from = start + anchor.len();
            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail: String =
                code[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            out.push(tail.trim_end_matches(':').to_string());
        }
    }
    out
}

fn find_use(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("use ") {
        let at = from + i;
        let line_start = s[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = s[line_start..at].trim();
        if before.is_empty() || before == "pub" || before.starts_with("pub(") {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

/// Resolves a path written in module `here` to the module file it reaches.
fn resolve(tree: &Tree, here: &ModPath, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let (mut base, rest): (ModPath, &[&str]) = match segs.first().copied() {
        Some("crate") => (Vec::new(), &segs[1..]),
        Some("self") => (here.clone(), &segs[1..]),
        Some("super") => {
            let mut b = here.clone();
            let mut n = 0;
            while segs.get(n) == Some(&"super") {
                b.pop();
                n += 1;
            }
            (b, &segs[n..])
        }
        Some(first) => {
            // A child of this module (`pub use child::X`); anything else is
            // an external crate or a local item.
            let mut child = here.clone();
            child.push(first.to_string());
            if !tree.modules.contains_key(&child) {
                return None;
            }
            (here.clone(), &segs[..])
        }
        None => return None,
    };
    for s in rest {
        let mut next = base.clone();
        next.push((*s).to_string());
        if tree.modules.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    tree.modules.get(&base).cloned()
}

/// The layer table from DESIGN.md: `(path under src/, layer)`; a path that
/// ends in `/` covers a directory.
fn layer_table(design: &str) -> Vec<(String, u8)> {
    let start = design.find("<!-- layers -->").expect("DESIGN.md has a <!-- layers --> table");
    let end = design.find("<!-- /layers -->").expect("DESIGN.md closes the table with <!-- /layers -->");
    let mut table = Vec::new();
    for line in design[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.strip_prefix('L')).and_then(|c| c[..1].parse::<u8>().ok()) else {
            continue;
        };
        let files = cells.last().filter(|c| !c.is_empty()).or(cells.get(cells.len().saturating_sub(2))).unwrap();
        for part in files.split('`').skip(1).step_by(2) {
            table.push((part.to_string(), layer));
        }
    }
    table
}

fn layer_of(table: &[(String, u8)], file: &str) -> Option<u8> {
    table
        .iter()
        .filter(|(p, _)| if p.ends_with('/') { file.starts_with(p.as_str()) } else { file == p })
        .max_by_key(|(p, _)| p.len())
        .map(|(_, l)| *l)
}

fn top(file: &str) -> Option<String> {
    let mp = module_path(file);
    mp.first().cloned()
}

/// Every violation of the rule in `tree`, as readable lines.
fn check(tree: &Tree, table: &[(String, u8)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut witness: BTreeMap<(String, String), String> = BTreeMap::new();
    for (mp, file) in &tree.modules {
        let Some(from_layer) = layer_of(table, file) else {
            problems.push(format!("{file}: in no layer of DESIGN.md's table"));
            continue;
        };
        for path in paths(&tree.sources[file]) {
            let Some(target) = resolve(tree, mp, &path) else { continue };
            if &target == file {
                continue;
            }
            let to_layer = layer_of(table, &target).unwrap_or(u8::MAX);
            if to_layer > from_layer {
                problems.push(format!("{file} (L{from_layer}) imports {path} from {target} (L{to_layer}): upward"));
            }
            if let (Some(a), Some(b)) = (top(file), top(&target)) {
                if a != b {
                    graph.entry(a.clone()).or_default().insert(b.clone());
                    witness.entry((a, b)).or_insert_with(|| format!("{file} -> {path}"));
                }
            }
        }
    }
    for (members, cycle) in cycles(&graph) {
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        let mut line = format!(
            "import cycle between top-level modules: {} (all of {{{}}} reach each other)",
            cycle.join(" -> "),
            members.join(", ")
        );
        for pair in cycle.windows(2) {
            if let Some(w) = witness.get(&(pair[0].clone(), pair[1].clone())) {
                let _ = write!(line, "\n    {w}");
            }
        }
        problems.push(line);
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Per strongly connected component of more than one module: its members
/// and one concrete cycle through its first member.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(BTreeSet<String>, Vec<String>)> {
    let nodes: BTreeSet<&String> = graph.keys().chain(graph.values().flatten()).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    stack.push(m.clone());
                }
            }
        }
        seen
    };
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for n in nodes {
        if done.contains(n) || !reach(n).contains(n) {
            continue;
        }
        // Walk a shortest way back to `n` to show one concrete cycle.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([n.clone()]);
        let mut found = false;
        while let Some(cur) = queue.pop_front() {
            for m in graph.get(&cur).into_iter().flatten() {
                if m == n {
                    prev.insert(format!("{n}#end"), cur.clone());
                    found = true;
                    break;
                }
                if !prev.contains_key(m) {
                    prev.insert(m.clone(), cur.clone());
                    queue.push_back(m.clone());
                }
            }
            if found {
                break;
            }
        }
        let mut back = vec![prev[&format!("{n}#end")].clone()];
        while back.last() != Some(n) {
            let step = prev[back.last().unwrap()].clone();
            back.push(step);
        }
        back.reverse();
        let mut cycle = back;
        cycle.push(n.clone());
        let comp: BTreeSet<String> = reach(n).into_iter().filter(|m| reach(m).contains(n)).collect();
        done.extend(comp.iter().cloned());
        out.push((comp, cycle));
    }
    out
}

#[test]
fn layers_point_down_and_modules_do_not_cycle() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let design = std::fs::read_to_string(root.join("DESIGN.md")).unwrap();
    let table = layer_table(&design);
    assert!(table.len() > 10, "the layer table in DESIGN.md looks empty: {table:?}");
    let tree = load(&root.join("src"));
    let problems = check(&tree, &table);
    assert!(problems.is_empty(), "{} layering problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// The checker itself: a small tree with one upward import and one cycle.
#[test]
fn the_checker_catches_an_upward_import_and_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let path = src.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod policy;\npub mod shell;\npub mod app;\n");
    write("policy/mod.rs", "pub mod pure;\npub use pure::decide;\n");
    write("policy/pure.rs", "pub fn decide() {}\n#[cfg(test)]\nmod tests {\n    use crate::app::Server;\n}\n");
    write("shell.rs", "use crate::policy::pure::decide;\n");
    write("app/mod.rs", "use crate::{policy, shell};\npub struct Server;\n");
    let table = vec![("policy/".to_string(), 0), ("shell.rs".to_string(), 2), ("app/".into(), 3), ("lib.rs".into(), 3)];
    assert!(check(&load(src), &table).is_empty(), "a clean tree passes (test code is not checked)");

    write("policy/pure.rs", "pub fn decide() { let _ = crate::shell::helper(); }\n");
    let problems = check(&load(src), &table);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("policy/pure.rs (L0) imports crate::shell::helper from shell.rs (L2): upward")),
        "{problems:?}"
    );

    write("policy/pure.rs", "pub fn decide() {}\n");
    write("shell.rs", "use crate::policy::pure::decide;\nuse super::app::{Server as S};\n");
    write("app/mod.rs", "use crate::{policy, shell};\npub struct Server;\n");
    let problems = check(&load(src), &table);
    assert!(problems.iter().any(|p| p.contains("upward")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with("import cycle between top-level modules: app -> shell -> app")
            || p.starts_with("import cycle between top-level modules: shell -> app -> shell")),
        "{problems:?}"
    );

    let unmapped = vec![("policy/".to_string(), 0)];
    assert!(check(&load(src), &unmapped).iter().any(|p| p.contains("in no layer")));
}
