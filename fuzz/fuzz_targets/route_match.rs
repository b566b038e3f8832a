//! Route lookup and `never_spill` matching (`runtime::Runtime::route`,
//! `runtime::Route::never_spills`) over a runtime built from a config with
//! arbitrary routes: no panic, the route found matches the request and no
//! more specific route that also matches was passed over.
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use spillway::fuzzing::Routes;

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<(Option<String>, Option<String>, Vec<String>)>,
    host: Option<String>,
    path: String,
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config(routes: &[(Option<String>, Option<String>, Vec<String>)]) -> String {
    let mut text = String::from(
        "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\n[pools.a]\nendpoints = [\"127.0.0.1:1\"]\n\
         [pools.c]\nrole = \"cloud\"\nendpoints = [\"127.0.0.1:2\"]\n",
    );
    for (i, (host, prefix, never)) in routes.iter().take(8).enumerate() {
        text.push_str(&format!("[[route]]\nname = \"r{i}\"\nprimary = \"a\"\noverflow = \"c\"\n"));
        if let Some(h) = host {
            text.push_str(&format!("host = {}\n", quoted(h)));
        }
        if let Some(p) = prefix {
            text.push_str(&format!("path_prefix = {}\n", quoted(p)));
        }
        let never: Vec<String> = never.iter().take(4).map(|p| quoted(p)).collect();
        text.push_str(&format!("never_spill = [{}]\n", never.join(", ")));
    }
    text
}

thread_local! {
    /// Runtimes by config text: building one (pools, TLS client configs)
    /// costs far more than the lookups, and most inputs change only the request.
    static BUILT: RefCell<HashMap<String, Option<Rc<Routes>>>> = RefCell::new(HashMap::new());
}

fn routes_for(text: String) -> Option<Rc<Routes>> {
    BUILT.with(|built| {
        let mut built = built.borrow_mut();
        if built.len() > 256 {
            built.clear();
        }
        built.entry(text).or_insert_with_key(|text| Routes::from_config(text, Path::new(".")).ok().map(Rc::new)).clone()
    })
}

fuzz_target!(|input: Input| {
    let Some(routes) = routes_for(config(&input.routes)) else { return };
    let all = routes.all();
    // The lookup order: routes with a host first, then longer prefixes.
    for w in all.windows(2) {
        let key = |m: &spillway::fuzzing::Matched| (m.host.is_some(), m.path_prefix.len());
        assert!(key(&w[0]) >= key(&w[1]), "lookup order {:?}", all);
    }
    let host = input.host.as_deref();
    let path = input.path.as_str();
    let found = routes.lookup(host, path);
    assert_eq!(found, routes.lookup(host, path), "the lookup is a function of host and path");
    match &found {
        None => {
            for r in all.iter().filter(|r| r.host.is_none()) {
                assert!(!path.starts_with(&r.path_prefix), "{path:?} matches {r:?} but found no route");
            }
        }
        Some(m) => {
            assert!(path.starts_with(&m.path_prefix), "{path:?} got {m:?}");
            if let Some(want) = &m.host {
                let h = host.expect("a host route needs a host").to_ascii_lowercase();
                assert!(h.contains(want.as_str()), "host {h:?} got {m:?}");
            }
            // No route tried before it would have matched as well.
            for r in all.iter().take_while(|r| r.name != m.name) {
                if r.host.is_none() || r.host == m.host {
                    assert!(!path.starts_with(&r.path_prefix), "{path:?}: {r:?} passed over for {m:?}");
                }
            }
            // A never_spill entry, as a path of the same route, never spills.
            for p in &m.never_spill {
                if let Some(again) = routes.lookup(host, p) {
                    if again.name == m.name {
                        assert!(again.path_never_spills, "{p:?} is never_spill on {m:?}");
                    }
                }
            }
        }
    }
    // Host names are case-insensitive and a port does not matter.
    if let Some(h) = host {
        let name = |f: Option<spillway::fuzzing::Matched>| f.map(|m| m.name);
        let expected = name(found.clone());
        assert_eq!(name(routes.lookup(Some(&h.to_ascii_uppercase()), path)), expected, "host case");
        if !h.contains(':') && !h.starts_with('[') {
            assert_eq!(name(routes.lookup(Some(&format!("{h}:8080")), path)), expected, "host port");
        }
    }
});
