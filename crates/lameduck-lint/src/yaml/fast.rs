//! A fast path for the plain block YAML that manifests are nearly always written in.
//!
//! The general parser (saphyr-parser) spends most of the run time of `lameduck lint` on large
//! inputs. Most documents written by people, Helm or kustomize use a small part of YAML: block
//! mappings and sequences, one-line flow collections, plain scalars and quoted scalars without
//! escapes. This module parses exactly that subset into the same tree, positions included, and
//! answers "not sure" ([`None`]) for everything else: anchors, aliases, tags, block scalars,
//! multi-line scalars or flow collections, escapes, tabs, non-ASCII text, directives, and every
//! input it cannot prove valid. The caller then parses the chunk with the general parser, so
//! errors, and the trees of unusual documents, come from one place.
//!
//! Guarantees: for an input it accepts, the tree equals the general parser's (checked by a
//! differential property test); never panics (slicing happens on ASCII text only); recursion is
//! bounded by [`FAST_DEPTH`], below the general parser's [`super::MAX_DEPTH`].

use std::sync::Arc;

use super::{Entry, Node, Pos, Text, Value};

/// Nesting beyond this is left to the general parser (and its limit).
const FAST_DEPTH: usize = 64;
/// Longer keys are left to the general parser (YAML caps simple keys at 1024 characters).
const MAX_KEY: usize = 1000;

/// What a chunk holds, when the fast path is sure: `Some(None)` for a chunk without content
/// (only comments or a bare `---`), `Some(Some((line, root)))` for a document starting at `line`.
pub(super) type Parsed = Option<Option<(usize, Node)>>;

/// Parses one document chunk of the stream; see the module documentation.
pub(super) fn parse(text: &str, first_line: usize) -> Parsed {
    if !text.is_ascii() || text.bytes().any(|b| b == b'\t' || b == b'\r') {
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

    /// A flow node or quoted scalar at byte `i` of line `li`, ending on that line; returns it
    /// and the byte after it.
    fn flow_node(&mut self, li: usize, i: usize, depth: usize) -> Option<(Node, usize)> {
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

#[cfg(test)]
mod tests {
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

    #[test]
    fn deep_nesting_is_left_to_the_general_parser() {
        let flow = format!("a: {}1{}\n", "[".repeat(500), "]".repeat(500));
        assert!(parse(&flow, 1).is_none());
        let block: String = (0..400).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert!(parse(&block, 1).is_none());
    }

    const SEEDS: [&str; 3] = [
        include_str!("../../tests/fixtures/realistic/shop/web.yaml"),
        include_str!("../../tests/fixtures/realistic/data/postgres.yaml"),
        include_str!("../../tests/fixtures/realistic/rollouts/checkout.yaml"),
    ];

    /// A mutation of a seed: insert, delete or replace text at some places.
    fn mutate() -> impl Strategy<Value = String> {
        let edits = prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                0u8..3,
                prop::sample::select(
                    &[
                        ":", ": ", "-", "- ", " ", "  ", "\n", "\n  ", "[", "]", "{", "}", ",",
                        "\"", "'", "#", " #", "---\n", "...\n", "&a", "*a", "!", "|", ">", "?",
                        "~", "\t", "é", "x",
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
}
