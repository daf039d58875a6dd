//! lint's fast YAML path against the general parser (saphyr-parser): wherever the fast path
//! answers for a document, its tree, positions included, must be the general parser's; and
//! parsing never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Sources reach the parser as text: lint reads files as UTF-8 and refuses the rest.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(difference) = lameduck_lint::fuzzing::fast_path_agrees(text) {
        panic!("the fast path and the general parser differ: {difference}");
    }
});
