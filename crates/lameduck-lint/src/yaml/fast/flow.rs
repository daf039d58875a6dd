//! Flow collections (`[a, b]`, `{k: v}`) and quoted scalars on one line, for the fast path.
//!
//! Separate from the block structure in the parent module: these are scanned within a single
//! line by byte offset, and only [`Fast::flow_node`] is entered from block context.

use super::{FAST_DEPTH, Fast, MAX_KEY, plain_start, skip_spaces};
use crate::yaml::{Entry, Node, Value};

impl Fast<'_> {
    /// A flow node or quoted scalar at byte `i` of line `li`, ending on that line; returns it
    /// and the byte after it.
    pub(super) fn flow_node(&mut self, li: usize, i: usize, depth: usize) -> Option<(Node, usize)> {
        if depth > FAST_DEPTH {
            return None;
        }
        let line = self.lines[li].as_bytes();
        let text = self.lines[li];
        match *line.get(i)? {
            b'{' => self.flow_map(li, i, depth),
            b'[' => self.flow_seq(li, i, depth),
            b'"' => {
                let len = text[i + 1..].find('"')?;
                let inner = &text[i + 1..i + 1 + len];
                if inner.contains('\\') {
                    return None;
                }
                Some((self.scalar(self.pos(li, i), inner, false)?, i + len + 2))
            }
            b'\'' => {
                let len = text[i + 1..].find('\'')?;
                if line.get(i + len + 2) == Some(&b'\'') {
                    return None;
                }
                let inner = &text[i + 1..i + 1 + len];
                Some((self.scalar(self.pos(li, i), inner, false)?, i + len + 2))
            }
            _ => {
                if !plain_start(line, i) {
                    return None;
                }
                let mut j = i;
                while j < line.len() && !b",[]{}#:\"'".contains(&line[j]) {
                    j += 1;
                }
                if !matches!(line.get(j), Some(b',' | b']' | b'}')) {
                    return None;
                }
                let s = text[i..j].trim_end_matches(' ');
                Some((self.scalar(self.pos(li, i), s, true)?, i + s.len()))
            }
        }
    }

    fn flow_seq(&mut self, li: usize, open: usize, depth: usize) -> Option<(Node, usize)> {
        let line = self.lines[li].as_bytes();
        let start = self.items.len();
        let mut i = skip_spaces(line, open + 1);
        if line.get(i) == Some(&b']') {
            i += 1;
        } else {
            loop {
                let (node, end) = self.flow_node(li, i, depth + 1)?;
                self.items.push(node);
                i = skip_spaces(line, end);
                match line.get(i) {
                    Some(b',') => {
                        i = skip_spaces(line, i + 1);
                        if line.get(i) == Some(&b']') {
                            return None;
                        }
                    }
                    Some(b']') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let items = self.items.drain(start..).collect();
        Some((
            Node {
                pos: self.pos(li, open),
                value: Value::Seq(items),
            },
            i,
        ))
    }

    fn flow_map(&mut self, li: usize, open: usize, depth: usize) -> Option<(Node, usize)> {
        let line = self.lines[li].as_bytes();
        let text = self.lines[li];
        let start = self.entries.len();
        let mut i = skip_spaces(line, open + 1);
        if line.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if !plain_start(line, i) || line[i] == b'-' {
                    return None;
                }
                let mut j = i;
                while j < line.len() && !b",[]{}#:\"'".contains(&line[j]) {
                    j += 1;
                }
                if line.get(j) != Some(&b':') || line.get(j + 1) != Some(&b' ') {
                    return None;
                }
                if line[j - 1] == b' ' || j - i > MAX_KEY {
                    return None;
                }
                let key = self.scalar(self.pos(li, i), &text[i..j], true)?;
                let v = skip_spaces(line, j + 1);
                let (value, end) = self.flow_node(li, v, depth + 1)?;
                self.entries.push(Entry { key, value });
                i = skip_spaces(line, end);
                match line.get(i) {
                    Some(b',') => {
                        i = skip_spaces(line, i + 1);
                        if line.get(i) == Some(&b'}') {
                            return None;
                        }
                    }
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        let entries = self.entries.drain(start..).collect();
        Some((
            Node {
                pos: self.pos(li, open),
                value: Value::Map(entries),
            },
            i,
        ))
    }
}
