//! Config parse and validation (`config::from_str`), and the runtime
//! snapshot a valid config builds (`runtime::Runtime::build`): any text is
//! refused with a message or accepted, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spillway::fuzzing::Routes;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Relative paths (TLS files, tokens) resolve against the example configs' directory.
    let base = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    match Routes::from_config(text, base) {
        Ok(routes) => assert!(!routes.all().is_empty(), "a valid config has a route"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
