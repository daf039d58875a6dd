//! A YAML (and so JSON) document tree that keeps the line and column of every node.
//!
//! The stream is first split into documents at `---` / `...` lines in column 0 (the YAML spec
//! makes these markers end a document wherever they stand), and each document is parsed on its
//! own. A syntax error therefore costs only the document it is in: the others are still linted.
//!
//! Guarantees: never panics on any input (covered by a property test); nesting deeper than
//! [`MAX_DEPTH`] and alias expansion beyond [`MAX_NODES`] nodes are reported as errors, so a
//! hostile input cannot exhaust the stack or memory.

use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

mod fast;

/// Nesting limit of collections in one document.
pub const MAX_DEPTH: usize = 200;
/// Limit of nodes in one document, counting alias expansions.
pub const MAX_NODES: usize = 2_000_000;

/// A position in a source file: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// A node of a document with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What the node holds.
    pub value: Value,
}

/// The content of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar: its text, and whether it was quoted or a block scalar (then it is a string).
    Scalar {
        /// The text of the scalar.
        text: Text,
        /// `true` for a plain (unquoted) scalar, whose type the YAML core schema resolves.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
}

/// The text of a scalar: a piece of a buffer shared by the scalars of one document (the
/// document's source when the scalar is written literally), so a tree does not cost one
/// allocation per scalar. Reads as a `str`.
///
/// Caveat: a single scalar longer than 4 GiB is not representable; the parser reports it as
/// a syntax error.
#[derive(Clone)]
pub struct Text {
    buf: Arc<str>,
    start: u32,
    end: u32,
}

impl Text {
    /// `buf[range]`, if the range is inside `buf`, on character boundaries, and below 4 GiB.
    pub(crate) fn slice(buf: &Arc<str>, start: usize, end: usize) -> Option<Self> {
        buf.get(start..end)?;
        Some(Self {
            buf: buf.clone(),
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// A text of its own.
    pub(crate) fn owned(text: &str) -> Option<Self> {
        Self::slice(&Arc::from(text), 0, text.len())
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Checked when the text was made; `get` keeps this panic-free regardless.
        self.buf
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// Whether the text is `s` (cheaper than comparing [`Text::as_str`]: no character
    /// boundaries to check).
    #[inline]
    fn is(&self, s: &str) -> bool {
        self.end.wrapping_sub(self.start) as usize == s.len()
            && self
                .buf
                .as_bytes()
                .get(self.start as usize..self.end as usize)
                == Some(s.as_bytes())
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key/value pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key (a scalar for every Kubernetes object).
    pub key: Node,
    /// The value.
    pub value: Node,
}

/// A document that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos_line}:{pos_column}: {message}", pos_line = pos.line, pos_column = pos.column)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub pos: Pos,
    /// What it found wrong.
    pub message: String,
}

/// One document of a stream: its tree, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The line the document starts on.
    pub line: usize,
    /// The root node, or the syntax error.
    pub root: Result<Node, SyntaxError>,
}

impl Node {
    /// The value under `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// The entry under `key` (to point at the key) if this is a mapping that has it.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            // `e.key.as_str() == Some(key)`, without slicing every key on the way.
            Value::Map(entries) => entries.iter().find(|e| match &e.key.value {
                Value::Scalar { text, plain } => text.is(key) && !(*plain && is_null(key)),
                _ => false,
            }),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The text of a scalar, unless it is a YAML null.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, plain } if !(*plain && is_null(text)) => Some(text.as_str()),
            _ => None,
        }
    }

    /// A plain scalar that is an integer (decimal, as Kubernetes writes them).
    pub fn as_i64(&self) -> Option<i64> {
        match &self.value {
            Value::Scalar { text, plain: true } => text.parse().ok(),
            _ => None,
        }
    }

    /// A plain scalar that is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match &self.value {
            Value::Scalar { text, plain: true } => {
                text.parse::<f64>().ok().filter(|f| f.is_finite())
            }
            _ => None,
        }
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// The entries of a mapping (empty for anything else).
    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// Whether this is a mapping.
    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// Whether this is a YAML null (`~`, `null`, empty).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null(text))
    }

    /// Mapping entries whose key and value are scalars, as pairs of strings.
    pub fn string_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries()
            .iter()
            .filter_map(|e| Some((e.key.as_str()?, e.value.as_str().unwrap_or(""))))
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

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

/// A collection being built.
enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<Node>,
    },
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

/// Parses a chunk with saphyr-parser: any YAML, with its errors.
fn parse_general(text: &str, first_line: usize, docs: &mut Vec<Document>) {
    let pos_of = |span: &Span| Pos {
        line: first_line + span.start.line().saturating_sub(1),
        column: span.start.col() + 1,
    };
    let error_of = |e: &ScanError| SyntaxError {
        pos: Pos {
            line: first_line + e.marker().line().saturating_sub(1),
            column: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    };
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut doc_line = first_line;
    // Bounded: every event consumes input, and the parser ends with StreamEnd or an error.
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(ev) => ev,
            Err(e) => {
                docs.push(Document {
                    line: doc_line,
                    root: Err(error_of(&e)),
                });
                return;
            }
        };
        let pos = pos_of(&span);
        let done = match event {
            Event::StreamEnd => return,
            Event::DocumentStart(_) => {
                doc_line = pos.line;
                stack.clear();
                anchors.clear();
                nodes = 0;
                None
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => None,
            Event::Scalar(text, style, anchor, _tag) => {
                let Some(text) = Text::owned(&text) else {
                    let message = "scalar longer than 4 GiB".to_owned();
                    docs.push(Document {
                        line: doc_line,
                        root: Err(SyntaxError { pos, message }),
                    });
                    return;
                };
                let node = Node {
                    pos,
                    value: Value::Scalar {
                        text,
                        plain: style == ScalarStyle::Plain,
                    },
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    nodes = nodes.saturating_add(count_nodes(node));
                    Some(node.clone())
                }
                None => {
                    let message = format!("alias refers to an unknown anchor (#{id})");
                    docs.push(Document {
                        line: doc_line,
                        root: Err(SyntaxError { pos, message }),
                    });
                    return;
                }
            },
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    let message = format!("nesting deeper than {MAX_DEPTH} levels");
                    docs.push(Document {
                        line: doc_line,
                        root: Err(SyntaxError { pos, message }),
                    });
                    return;
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => Some(anchored(
                    &mut anchors,
                    anchor,
                    Node {
                        pos,
                        value: Value::Seq(items),
                    },
                )),
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => Some(anchored(
                    &mut anchors,
                    anchor,
                    Node {
                        pos,
                        value: Value::Map(entries),
                    },
                )),
                None => None,
            },
        };
        let Some(node) = done else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            let message = format!("more than {MAX_NODES} nodes (after expanding aliases)");
            docs.push(Document {
                line: doc_line,
                root: Err(SyntaxError { pos, message }),
            });
            return;
        }
        match stack.last_mut() {
            None if node.is_null() => {}
            None => docs.push(Document {
                line: doc_line,
                root: Ok(node),
            }),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push(Entry {
                    key: k,
                    value: node,
                }),
            },
        }
    }
}

fn anchored(anchors: &mut HashMap<usize, Node>, anchor: usize, node: Node) -> Node {
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
    node
}

/// Counts the nodes of a tree without recursion.
fn count_nodes(node: &Node) -> usize {
    let mut count = 0usize;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.value {
            Value::Scalar { .. } => {}
            Value::Seq(items) => todo.extend(items),
            Value::Map(entries) => todo.extend(entries.iter().flat_map(|e| [&e.key, &e.value])),
        }
        if count > MAX_NODES {
            break;
        }
    }
    count
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
