//! A fast path for the plain block YAML that manifests are nearly always written in.
//!
//! The general parser (saphyr-parser) spends most of the run time of `lameduck lint` on large
//! inputs. Most documents written by people, Helm or kustomize use a small part of YAML: block
//! mappings and sequences, one-line flow collections, plain scalars and quoted scalars without
//! escapes. This module parses exactly that subset into the same tree, positions included, and
//! answers "not sure" ([`None`]) for everything else: anchors, aliases, tags, block scalars,
//! multi-line scalars or flow collections, escapes, tabs and other control characters,
//! non-ASCII text, directives, and every input it cannot prove valid. The caller then parses
//! the chunk with the general parser, so errors, and the trees of unusual documents, come from
//! one place.
//!
//! Guarantees: for an input it accepts, the tree equals the general parser's (checked by a
//! differential property test); never panics (slicing happens on ASCII text only); recursion is
//! bounded by [`FAST_DEPTH`], below the general parser's [`super::MAX_DEPTH`].

use std::sync::Arc;

use super::{Entry, Node, Pos, Text, Value};

mod flow;
#[cfg(test)]
mod tests;

/// Nesting beyond this is left to the general parser (and its limit).
const FAST_DEPTH: usize = 64;
/// Longer keys are left to the general parser (YAML caps simple keys at 1024 characters).
const MAX_KEY: usize = 1000;

/// What a chunk holds, when the fast path is sure: `Some(None)` for a chunk without content
/// (only comments or a bare `---`), `Some(Some((line, root)))` for a document starting at `line`.
pub(super) type Parsed = Option<Option<(usize, Node)>>;

/// Parses one document chunk of the stream; see the module documentation.
pub(super) fn parse(text: &str, first_line: usize) -> Parsed {
    // Control characters other than line feeds are left to the general parser too: YAML
    // allows none in a document but tab and CR (both of which the fast path does not handle),
    // and the general parser reports them (found by the `yaml_fast` fuzz target).
    if !text.is_ascii() || text.bytes().any(|b| (b < b' ' && b != b'\n') || b == 0x7f) {
        return None;
    }
    let lines: Vec<&str> = text.split('\n').collect();
    // The line of a `---` marker opening the document, if any (only comments may precede it).
    let mut marker = None;
    let mut content_seen = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('%') || line.starts_with("...") {
            return None;
        }
        if let Some(rest) = line.strip_prefix("---") {
            let t = rest.trim_start_matches(' ');
            let bare = t.is_empty() || (t.starts_with('#') && rest.starts_with(' '));
            if content_seen || marker.is_some() || !bare {
                return None;
            }
            marker = Some(i);
        } else if !matches!(line.as_bytes().get(indent(line)), None | Some(b'#')) {
            content_seen = true;
        }
    }
    if u32::try_from(text.len()).is_err() {
        return None;
    }
    let mut fast = Fast {
        buf: Arc::from(text),
        base: text.as_ptr() as usize,
        lines,
        first_line,
        entries: Vec::new(),
        items: Vec::new(),
    };
    let start = marker.map_or(0, |m| m + 1);
    let Some(first) = fast.next_content(start) else {
        return Some(None);
    };
    let doc_line = first_line + marker.unwrap_or(first);
    let (root, next) = fast.block_at_line(first, 0)?;
    if next < fast.lines.len() {
        return None;
    }
    Some(Some((doc_line, root)))
}

struct Fast<'a> {
    /// The chunk, shared by the texts of its scalars.
    buf: Arc<str>,
    /// Address of the chunk, to turn line slices into offsets into `buf`.
    base: usize,
    lines: Vec<&'a str>,
    first_line: usize,
    /// Scratch stacks: a collection's children are pushed here and moved into one exactly
    /// sized vector when it ends.
    entries: Vec<Entry>,
    items: Vec<Node>,
}

/// Bytes that may not start a plain scalar here (YAML indicators), besides `-`.
fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'?' | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b' '
    )
}

fn indent(line: &str) -> usize {
    line.bytes().take_while(|&b| b == b' ').count()
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// `-` followed by a space or the end of the line.
fn is_dash(rest: &[u8]) -> bool {
    rest.first() == Some(&b'-') && matches!(rest.get(1), None | Some(b' '))
}

/// Whether `b[i..]` may start a plain scalar (block or flow context).
fn plain_start(b: &[u8], i: usize) -> bool {
    match b.get(i) {
        None => false,
        Some(b'-') => !matches!(
            b.get(i + 1),
            None | Some(b' ' | b',' | b'[' | b']' | b'{' | b'}')
        ),
        Some(&c) => !is_indicator(c),
    }
}

/// The length of a simple block key at the start of `rest`: a plain scalar followed by `:` and
/// a space or the end of the line.
fn key_len(rest: &[u8]) -> Option<usize> {
    if !plain_start(rest, 0) || rest[0] == b'-' {
        return None;
    }
    let mut i = 0;
    while i < rest.len() && i <= MAX_KEY {
        match rest[i] {
            b':' if matches!(rest.get(i + 1), None | Some(b' ')) => {
                return (rest[i - 1] != b' ').then_some(i);
            }
            b'#' | b'[' | b']' | b'{' | b'}' | b'"' | b'\'' => return None,
            _ => i += 1,
        }
    }
    None
}

impl Fast<'_> {
    /// A scalar node whose text is `text`, a slice of one of the lines.
    fn scalar(&self, pos: Pos, text: &str, plain: bool) -> Option<Node> {
        let start = (text.as_ptr() as usize).checked_sub(self.base)?;
        Some(Node {
            pos,
            value: Value::Scalar {
                text: Text::slice(&self.buf, start, start + text.len())?,
                plain,
            },
        })
    }

    fn pos(&self, line: usize, col: usize) -> Pos {
        Pos {
            line: self.first_line + line,
            column: col + 1,
        }
    }

    /// The first line from `li` on with content (not blank, not only a comment).
    fn next_content(&self, mut li: usize) -> Option<usize> {
        while li < self.lines.len() {
            let line = self.lines[li];
            match line.as_bytes().get(indent(line)) {
                None | Some(b'#') => li += 1,
                Some(_) => return Some(li),
            }
        }
        None
    }

    /// The next content line, or the number of lines at the end.
    fn next_or_end(&self, li: usize) -> usize {
        self.next_content(li).unwrap_or(self.lines.len())
    }

    fn indent_at(&self, li: usize) -> usize {
        indent(self.lines[li])
    }

    /// A block collection starting at the indentation of line `li`.
    fn block_at_line(&mut self, li: usize, depth: usize) -> Option<(Node, usize)> {
        let line = self.lines[li].as_bytes();
        let col = indent(self.lines[li]);
        if is_dash(&line[col..]) {
            self.block_seq(li, col, false, depth)
        } else if key_len(&line[col..]).is_some() {
            self.block_mapping(li, col, depth)
        } else {
            None
        }
    }

    /// A block mapping whose keys stand in column `col`, the first on line `li`.
    fn block_mapping(&mut self, mut li: usize, col: usize, depth: usize) -> Option<(Node, usize)> {
        if depth > FAST_DEPTH {
            return None;
        }
        let pos = self.pos(li, col);
        let start = self.entries.len();
        loop {
            let line = self.lines[li].as_bytes();
            let klen = key_len(&line[col..])?;
            let key = self.scalar(self.pos(li, col), &self.lines[li][col..col + klen], true)?;
            let after = col + klen + 1;
            let voff = skip_spaces(line, after);
            let (value, next) = if voff == line.len() || line[voff] == b'#' {
                match self.next_content(li + 1) {
                    Some(n) if self.indent_at(n) > col => self.block_at_line(n, depth + 1)?,
                    Some(n)
                        if self.indent_at(n) == col
                            && is_dash(&self.lines[n].as_bytes()[col..]) =>
                    {
                        self.block_seq(n, col, true, depth + 1)?
                    }
                    next => (
                        // Empty: a slice of the line, so it has an offset in the chunk.
                        self.scalar(self.pos(li, col + klen), &self.lines[li][col..col], true)?,
                        next.unwrap_or(self.lines.len()),
                    ),
                }
            } else {
                self.inline_item(li, voff, col, depth + 1)?
            };
            self.entries.push(Entry { key, value });
            li = next;
            if li >= self.lines.len() || self.indent_at(li) < col {
                break;
            }
            if self.indent_at(li) > col {
                return None;
            }
        }
        let entries = self.entries.drain(start..).collect();
        Some((
            Node {
                pos,
                value: Value::Map(entries),
            },
            li,
        ))
    }

    /// A block sequence whose `-` stand in column `col`, the first on line `li`. An indentless
    /// sequence (the value of a key in the same column) starts, for the general parser, where
    /// its first item does.
    fn block_seq(
        &mut self,
        mut li: usize,
        col: usize,
        indentless: bool,
        depth: usize,
    ) -> Option<(Node, usize)> {
        if depth > FAST_DEPTH {
            return None;
        }
        let mut pos = self.pos(li, col);
        if indentless {
            pos = self.pos(li, skip_spaces(self.lines[li].as_bytes(), col + 1));
        }
        let start = self.items.len();
        loop {
            let line = self.lines[li].as_bytes();
            if !is_dash(&line[col..]) {
                break;
            }
            let ioff = skip_spaces(line, col + 1);
            if ioff == line.len() || line[ioff] == b'#' || is_dash(&line[ioff..]) {
                return None;
            }
            let (item, next) = if key_len(&line[ioff..]).is_some() {
                self.block_mapping(li, ioff, depth + 1)?
            } else {
                self.inline_item(li, ioff, col, depth + 1)?
            };
            self.items.push(item);
            li = next;
            if li >= self.lines.len() || self.indent_at(li) < col {
                break;
            }
            if self.indent_at(li) > col {
                return None;
            }
        }
        let items = self.items.drain(start..).collect();
        Some((
            Node {
                pos,
                value: Value::Seq(items),
            },
            li,
        ))
    }

    /// A node that fits on line `li` from byte `off`, in a block collection at column `col`:
    /// the rest of the line may only be a comment, and the next content line may not be
    /// indented deeper than `col` (that would continue the scalar, or be an error).
    fn inline_item(
        &mut self,
        li: usize,
        off: usize,
        col: usize,
        depth: usize,
    ) -> Option<(Node, usize)> {
        let line = self.lines[li].as_bytes();
        let (node, end) = match line[off] {
            b'{' | b'[' | b'"' | b'\'' => self.flow_node(li, off, depth)?,
            _ => {
                if !plain_start(line, off) {
                    return None;
                }
                // The scalar ends at a comment (` #`) or the end of the line; a `: ` or a
                // final `:` in it would make it a key (or an error).
                let b = &line[off..];
                let mut raw_end = b.len();
                for (i, &c) in b.iter().enumerate() {
                    if c == b'#' && i > 0 && b[i - 1] == b' ' {
                        raw_end = i - 1;
                        break;
                    }
                    if c == b':' && matches!(b.get(i + 1), None | Some(b' ')) {
                        return None;
                    }
                }
                let text = self.lines[li][off..off + raw_end].trim_end_matches(' ');
                let end = text.len();
                (self.scalar(self.pos(li, off), text, true)?, off + end)
            }
        };
        let rest = skip_spaces(line, end);
        if rest < line.len() && !(line[rest] == b'#' && rest > end) {
            return None;
        }
        let next = self.next_or_end(li + 1);
        if next < self.lines.len() && self.indent_at(next) > col {
            return None;
        }
        Some((node, next))
    }
}
