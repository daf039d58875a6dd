//! The general parser: any YAML through saphyr-parser's events, with its syntax errors and
//! the depth and alias-expansion limits. Separate from the fast path, which hands it every
//! chunk it is not sure about.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use super::{Document, Entry, MAX_DEPTH, MAX_NODES, Node, Pos, SyntaxError, Text, Value};

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

/// Parses a chunk with saphyr-parser: any YAML, with its errors.
pub(super) fn parse_general(text: &str, first_line: usize, docs: &mut Vec<Document>) {
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
