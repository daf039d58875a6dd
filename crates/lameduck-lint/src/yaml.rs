//! A YAML (and so JSON) document tree that keeps the line and column of every node.
//!
//! The stream is first split into documents at `---` / `...` lines in column 0 (the YAML spec
//! makes these markers end a document wherever they stand), and each document is parsed on its
//! own. A syntax error therefore costs only the document it is in: the others are still linted.
//!
//! Guarantees: never panics on any input (covered by a property test); nesting deeper than
//! [`MAX_DEPTH`] and alias expansion beyond [`MAX_NODES`] nodes are reported as errors, so a
//! hostile input cannot exhaust the stack or memory.

mod fast;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod general;
mod tree;

use general::parse_general;
pub use tree::{Document, Entry, Node, Pos, SyntaxError, Text, Value};

/// Nesting limit of collections in one document.
pub const MAX_DEPTH: usize = 200;
/// Limit of nodes in one document, counting alias expansions.
pub const MAX_NODES: usize = 2_000_000;

/// Parses a stream of YAML (or JSON) documents. Empty documents (only comments) are skipped.
pub fn parse_stream(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    for chunk in split_documents(text) {
        chunk.parse_into(&mut docs);
    }
    docs
}

/// A piece of the stream holding one document, and the line it starts on.
pub(crate) struct Chunk<'a> {
    pub(crate) text: &'a str,
    pub(crate) first_line: usize,
}

impl Chunk<'_> {
    /// Parses the chunk, appending its documents (normally one) to `docs`.
    pub(crate) fn parse_into(&self, docs: &mut Vec<Document>) {
        parse_chunk(self.text, self.first_line, docs);
    }
}

/// Splits at document markers in column 0, keeping directives with the document they prefix.
pub(crate) fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut has_content = false;
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let end = bytes[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| offset + i + 1);
        // Only lines starting with `-` or `.` can be markers; before the first content, every
        // line is looked at.
        if !(has_content || matches!(bytes[offset], b'-' | b'.')) {
            let bare = text[offset..end].trim_end_matches(['\n', '\r']);
            let t = bare.trim_start();
            if !(t.is_empty() || t.starts_with('#') || bare.starts_with('%')) {
                has_content = true;
            }
            offset = end;
            continue;
        }
        if !matches!(bytes[offset], b'-' | b'.') {
            offset = end;
            continue;
        }
        let bare = text[offset..end].trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") {
            if has_content {
                chunks.push(Chunk {
                    text: &text[start..offset],
                    first_line: start_line,
                });
                start = offset;
                start_line = line_no;
            }
            // The marker line itself may carry content (`--- {a: 1}`).
            has_content = true;
        } else if is_marker("...") {
            offset = end;
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset;
            start_line = line_no + 1;
            has_content = false;
            continue;
        } else if !has_content {
            // `-x` or `.x`: content.
            has_content = true;
        }
        offset = end;
    }
    if start < text.len() {
        chunks.push(Chunk {
            text: &text[start..],
            first_line: start_line,
        });
    }
    chunks
}

fn parse_chunk(text: &str, first_line: usize, docs: &mut Vec<Document>) {
    match fast::parse(text, first_line) {
        Some(Some((line, root))) => docs.push(Document {
            line,
            root: Ok(root),
        }),
        Some(None) => {}
        None => parse_general(text, first_line, docs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(text: &str) -> Vec<Result<Node, SyntaxError>> {
        parse_stream(text).into_iter().map(|d| d.root).collect()
    }

    #[test]
    fn positions_are_one_based_and_offset_per_document() {
        let docs = roots("a: 1\n---\n# comment\nb:\n  c: x\n");
        assert_eq!(docs.len(), 2);
        let second = docs[1].as_ref().unwrap();
        let c = second.get("b").unwrap().entry("c").unwrap();
        assert_eq!(c.key.pos, Pos { line: 5, column: 3 });
        assert_eq!(c.value.as_str(), Some("x"));
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next() {
        let docs = roots("a: [1, 2\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        let err = docs[0].as_ref().unwrap_err();
        assert!(err.pos.line <= 2, "{err:?}");
        assert_eq!(
            docs[1].as_ref().unwrap().get("b").unwrap().as_i64(),
            Some(2)
        );
    }

    #[test]
    fn empty_and_comment_only_documents_are_skipped() {
        let docs = roots("---\n# only a comment\n---\n\n---\nk: v\n...\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn json_keeps_positions() {
        let docs = roots("{\n  \"kind\": \"Pod\",\n  \"spec\": {\"x\": 1}\n}\n");
        let root = docs[0].as_ref().unwrap();
        assert_eq!(root.get("kind").unwrap().as_str(), Some("Pod"));
        assert_eq!(
            root.entry("spec").unwrap().key.pos,
            Pos { line: 3, column: 3 }
        );
        assert_eq!(root.path(&["spec", "x"]).unwrap().as_i64(), Some(1));
    }

    #[test]
    fn quoted_numbers_are_strings_and_nulls_are_none() {
        let root = roots("a: \"5\"\nb: ~\nc: 5\n").remove(0).unwrap();
        assert_eq!(root.get("a").unwrap().as_i64(), None);
        assert_eq!(root.get("a").unwrap().as_str(), Some("5"));
        assert_eq!(root.get("b").unwrap().as_str(), None);
        assert_eq!(root.get("c").unwrap().as_i64(), Some(5));
    }

    #[test]
    fn aliases_expand() {
        let root = roots("a: &x {k: v}\nb: *x\n").remove(0).unwrap();
        assert_eq!(root.path(&["b", "k"]).unwrap().as_str(), Some("v"));
    }

    #[test]
    fn alias_bombs_are_cut_off() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = roots(&text).remove(0).unwrap_err();
        assert!(err.message.contains("nodes"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(roots(&text).remove(0).is_err());
        let block: String = (0..400).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(roots(&block).remove(0).is_err());
    }
}
