//! The docs' settings tables say what the code does: every row of `docs/run.md`'s table for a
//! drain setting names the flag, variable and default of [`lameduck_settings::SETTINGS`].

#![allow(clippy::unwrap_used)]

use lameduck_settings::SETTINGS;

#[test]
fn the_run_docs_table_matches_the_settings_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/run.md");
    let docs = std::fs::read_to_string(path).unwrap();
    for spec in SETTINGS {
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", spec.flag)))
            .unwrap_or_else(|| panic!("docs/run.md has no row for {}", spec.flag));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells[1..5],
            [
                format!("`{}`", spec.flag).as_str(),
                format!("`{}`", spec.env).as_str(),
                spec.default_text().as_str(),
                spec.doc
            ],
            "docs/run.md row for {} differs from lameduck_settings::SETTINGS",
            spec.flag
        );
    }
}
