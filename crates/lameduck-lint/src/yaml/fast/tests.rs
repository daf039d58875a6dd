//! Differential tests of the fast path against the general parser (and of the document
//! splitter against its line-by-line reference): fixtures, edge cases and mutated manifests.
//! Kept apart because they are as long as the parser they check.

use proptest::prelude::*;

use super::super::{Document, parse_general, split_documents};
use super::*;

/// Compares the fast path with the general parser on every chunk it accepts; returns how
/// many chunks it accepted and how many there were.
fn same_as_general(text: &str) -> (usize, usize) {
    let chunks = split_documents(text);
    let mut accepted = 0;
    for chunk in &chunks {
        let Some(fast) = parse(chunk.text, chunk.first_line) else {
            continue;
        };
        accepted += 1;
        let fast: Vec<Document> = fast
            .into_iter()
            .map(|(line, root)| Document {
                line,
                root: Ok(root),
            })
            .collect();
        let mut general = Vec::new();
        parse_general(chunk.text, chunk.first_line, &mut general);
        assert_eq!(fast, general, "chunk {:?}", chunk.text);
    }
    (accepted, chunks.len())
}

/// The line-by-line splitter the faster one replaced, as a reference.
fn split_reference(text: &str) -> Vec<(&str, usize)> {
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut has_content = false;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") {
            if has_content {
                chunks.push((&text[start..offset], start_line));
                start = offset;
                start_line = line_no;
            }
            // The marker line itself may carry content (`--- {a: 1}`).
            has_content = true;
        } else if is_marker("...") {
            offset += line.len();
            chunks.push((&text[start..offset], start_line));
            start = offset;
            start_line = line_no + 1;
            has_content = false;
            continue;
        } else if !has_content {
            let t = bare.trim_start();
            if !(t.is_empty() || t.starts_with('#') || bare.starts_with('%')) {
                has_content = true;
            }
        }
        offset += line.len();
    }
    if start < text.len() {
        chunks.push((&text[start..], start_line));
    }
    chunks
}

fn fixtures(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            fixtures(&path, out);
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn fixtures_parse_as_with_the_general_parser() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    fixtures(&dir, &mut files);
    let (mut accepted, mut total) = (0, 0);
    for (_, text) in &files {
        let (a, t) = same_as_general(text);
        accepted += a;
        total += t;
    }
    // Most hand-written manifests take the fast path; otherwise it is no faster.
    assert!(accepted * 10 >= total * 7, "{accepted} of {total} chunks");
}

#[test]
fn edge_cases_parse_as_with_the_general_parser() {
    let cases = [
        "a: 1\n",
        "---\na: 1\n",
        "# c\n---\na: 1\n",
        "--- # c\na: 1\n",
        "---\n# only\n",
        "\n\n  a: 1\n  b:\n  c: [x, 'y', \"z\", {}]\n",
        "a:\nb: 2\n",
        "a:\n",
        "a:\n- 1\n-  x: y\n   z: w\n- {k: v}\nb: c\n",
        "a:\n-    1\n",
        "a:\n-    b: 1\n     c: 2\n",
        "a:\n  - 1\n  - - 2\n",
        "a:\n  -\n    b: 1\n",
        "a: b # c\nd: 'e' #f\ng: \"h\"  # i\n",
        "a: b#c\n",
        "a: http://x:80/y\n",
        "a: b: c\n",
        "a: b\n  c\n",
        "a: b\n  # c\nd: e\n",
        "a: {b: [1, 2, {c: d}], e: f}\n",
        "a: {b: 1,}\n",
        "a: [1, 2,]\n",
        "a: {b: 1\n  }\n",
        "a: [--x=1, -1, - x]\n",
        "a: ''\nb: \"\"\nc: 'it''s'\nd: \"a\\\"b\"\n",
        "a: ~\nb: null\nc: -\nd: -1\n",
        "'a': 1\n",
        "\"a\": 1\n",
        "a : 1\n",
        "a:  1\n",
        "a:\tb\n",
        "a: é\n",
        "a: |\n  x\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "- a\n- b\n",
        "- a\nb: c\n",
        "a:\n  b: 1\n c: 2\n",
        "a:\n    b: 1\n  c: 2\n",
        "a: {b: c}d\n",
        "a: [b]  # c\n",
        "a: [b]#c\n",
        "a: \"b\": c\n",
        "a: 1\n...\n",
        "%YAML 1.2\n---\na: 1\n",
        "a: [b, {c: d, e: [f]}]\n",
        "a: {b: }\n",
        "a: {b}\n",
        "a: {b:c}\n",
        "a: {? b: c}\n",
        "a: [b: c]\n",
        "a:\n- b\n - c\n",
        "key with spaces: value with spaces\n",
        "a: b\n---x\n",
        "- - a\n",
        "-\n",
        "a:\n-\n",
        "a: 1\r\nb: 2\r\n",
    ];
    for case in cases {
        same_as_general(case);
    }
    // The common shapes do take the fast path.
    for case in ["a: 1\n", "a:\n- 1\n-  x: y\n   z: w\n- {k: v}\nb: c\n"] {
        assert!(parse(case, 1).is_some(), "{case:?}");
    }
}

/// Found by the `yaml_fast` fuzz target: the fast path took control characters in a plain
/// scalar as text, where YAML allows none and the general parser reports a syntax error.
#[test]
fn control_characters_are_left_to_the_general_parser() {
    let found = "a: ~\nb: null\nc: -1\nd:\nf: h\u{7}tp:6\0x:81 x\n";
    assert!(parse(found, 1).is_none());
    same_as_general(found);
    for control in (0u8..0x20).filter(|&b| b != b'\n').chain([0x7f]) {
        let text = format!("a: b{}c\n", char::from(control));
        assert!(parse(&text, 1).is_none(), "{text:?}");
        same_as_general(&text);
    }
}

#[test]
fn deep_nesting_is_left_to_the_general_parser() {
    let flow = format!("a: {}1{}\n", "[".repeat(500), "]".repeat(500));
    assert!(parse(&flow, 1).is_none());
    let block: String = (0..400).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    assert!(parse(&block, 1).is_none());
}

const SEEDS: [&str; 3] = [
    include_str!("../../../tests/fixtures/realistic/shop/web.yaml"),
    include_str!("../../../tests/fixtures/realistic/data/postgres.yaml"),
    include_str!("../../../tests/fixtures/realistic/rollouts/checkout.yaml"),
];

/// A mutation of a seed: insert, delete or replace text at some places.
fn mutate() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(
                &[
                    ":", ": ", "-", "- ", " ", "  ", "\n", "\n  ", "[", "]", "{", "}", ",", "\"",
                    "'", "#", " #", "---\n", "...\n", "&a", "*a", "!", "|", ">", "?", "~", "\t",
                    "é", "x",
                ][..],
            ),
        ),
        1..6,
    );
    (0..SEEDS.len(), edits).prop_map(|(seed, edits)| {
        let mut text = SEEDS[seed].to_owned();
        for (at, op, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let end = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            match op {
                0 => text.insert_str(i, insert),
                1 => text.replace_range(i..end, ""),
                _ => text.replace_range(i..end, insert),
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_manifests_parse_as_with_the_general_parser(text in mutate()) {
        same_as_general(&text);
        let chunks: Vec<_> = split_documents(&text).iter().map(|c| (c.text, c.first_line)).collect();
        prop_assert_eq!(chunks, split_reference(&text));
    }
}
