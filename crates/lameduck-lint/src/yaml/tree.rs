//! The document tree: nodes with their positions, scalar texts shared with the source, and
//! the accessors the checks read them with. Separate from parsing, which builds these trees
//! in two ways (the fast path and the general parser).

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

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
