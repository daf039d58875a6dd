//! Property tests of the input path: whatever bytes arrive, loading never panics, every error
//! names a line inside the input, and a broken document never hides the valid ones around it.

// Test helpers outside #[test] functions may fail loudly too.
#![allow(clippy::unwrap_used)]

use lameduck_lint::{Config, lint, load};
use proptest::prelude::*;

const SEED: &str = include_str!("fixtures/realistic/shop/web.yaml");
const JSON_SEED: &str = include_str!("fixtures/realistic/shop/api.json");

/// A mutation of a seed text: replace, insert or delete characters at some positions.
fn mutate(seed: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(
                &[
                    ":", "-", " ", "\n", "[", "]", "{", "}", "\"", "'", "&a", "*a", "!!", "#",
                    "---\n", "...\n", "|", ">", "\t", "%", "@", "\u{0}", "é",
                ][..],
            ),
        ),
        1..8,
    );
    edits.prop_map(move |edits| {
        let mut chars: Vec<char> = seed.chars().collect();
        for (at, op, text) in edits {
            let i = at.index(chars.len().max(1)).min(chars.len());
            match op {
                0 => chars.splice(i..i, text.chars()).for_each(drop),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => {
                    chars.splice(i..=i, text.chars()).for_each(drop);
                }
                _ => {}
            }
        }
        chars.into_iter().collect()
    })
}

fn check_invariants(text: &str) {
    let loaded = load("in.yaml", text);
    let lines = text.lines().count().max(1) + 1;
    for e in &loaded.errors {
        assert!(
            e.pos.line >= 1 && e.pos.line <= lines,
            "error line {} outside 1..={lines}: {e}",
            e.pos.line
        );
        assert!(!e.message.is_empty());
    }
    // Linting whatever was loaded must not panic either.
    let findings = lint(&loaded.objects, &Config::default());
    for f in findings {
        assert!(
            f.pos.line >= 1 && f.pos.line <= lines,
            "finding line {} outside input",
            f.pos.line
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mutated_yaml_never_panics(text in mutate(SEED)) {
        check_invariants(&text);
    }

    #[test]
    fn mutated_json_never_panics(text in mutate(JSON_SEED)) {
        check_invariants(&text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check_invariants(&text);
    }

    #[test]
    fn yaml_like_noise_never_panics(text in "([-:\\[\\]{}&*!|>#'\" \\n\\ta-z0-9]|---\\n){0,300}") {
        check_invariants(&text);
    }

    /// A garbage document between two valid ones costs only itself.
    #[test]
    fn a_broken_document_does_not_hide_its_neighbours(garbage in "[\\[{:\"'a-z ]{1,40}") {
        let text = format!("kind: Pod\nmetadata: {{name: a}}\n---\nkind: [{garbage}\n---\nkind: Pod\nmetadata: {{name: b}}\n");
        let loaded = load("in.yaml", &text);
        let names: Vec<&str> = loaded.objects.iter().map(|o| o.name.as_str()).collect();
        prop_assert!(names.contains(&"a") && names.contains(&"b"), "{names:?}");
        prop_assert!(loaded.errors.iter().all(|e| e.pos.line >= 4), "{:?}", loaded.errors);
    }
}
