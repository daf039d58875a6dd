//! Turning files into Kubernetes objects: documents, `kind: List`, and input errors.

use std::sync::Arc;

use crate::yaml::{self, Node, Pos};

/// A Kubernetes object read from a file.
#[derive(Debug, Clone)]
pub struct Object {
    /// The file it came from, as given on the command line (`<stdin>` for standard input).
    pub file: Arc<str>,
    /// Its whole tree.
    pub root: Node,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name` (or `generateName`, or empty).
    pub name: String,
    /// `metadata.namespace`, empty when not set.
    pub namespace: String,
}

/// A document or file that could not be read as Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}", line = pos.line, column = pos.column)]
pub struct InputError {
    /// The file.
    pub file: Arc<str>,
    /// Where in it (line 0 when the file as a whole could not be read).
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error about a whole file (it could not be read at all).
    pub fn file(file: impl Into<Arc<str>>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            pos: Pos::default(),
            message: message.into(),
        }
    }
}

/// What one source text holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The objects, in document order (`List` items expanded).
    pub objects: Vec<Object>,
    /// Documents that could not be parsed or are not objects.
    pub errors: Vec<InputError>,
}

impl Loaded {
    /// Adds another source's objects and errors.
    pub fn extend(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
    }
}

/// Parses every document of `text` (YAML or JSON) into objects.
///
/// Documents that are mappings without `kind` (Helm values, other config) are skipped silently;
/// documents that are not mappings, or do not parse, become [`InputError`]s with their line.
pub fn load(file: &str, text: &str) -> Loaded {
    load_all(&[(file, text)])
}

/// Inputs below this many bytes are parsed on one thread.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Like [`load`] for many sources at once, in order. Large inputs are parsed on several
/// threads (documents are independent); the result is the same as parsing them one by one.
pub fn load_all(sources: &[(&str, &str)]) -> Loaded {
    let mut chunks = Vec::new();
    let mut total = 0usize;
    for (i, (_, text)) in sources.iter().enumerate() {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        total += text.len();
        chunks.extend(yaml::split_documents(text).into_iter().map(|c| (i, c)));
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let docs: Vec<(usize, yaml::Document)> = if threads < 2 || total < PARALLEL_BYTES {
        parse_chunks(&chunks)
    } else {
        let per = total.div_ceil(threads);
        let mut groups: Vec<&[(usize, yaml::Chunk<'_>)]> = Vec::with_capacity(threads);
        let (mut start, mut size) = (0usize, 0usize);
        for (i, (_, c)) in chunks.iter().enumerate() {
            size += c.text.len();
            if size >= per {
                groups.push(&chunks[start..=i]);
                start = i + 1;
                size = 0;
            }
        }
        groups.push(&chunks[start..]);
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|g| scope.spawn(move || parse_chunks(g)))
                .collect();
            // The parser does not panic (property-tested); if it ever did, behave as on one thread.
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let files: Vec<Arc<str>> = sources.iter().map(|(name, _)| Arc::from(*name)).collect();
    let mut loaded = Loaded::default();
    for (i, doc) in docs {
        push_document(&files[i], doc, &mut loaded);
    }
    loaded
}

fn parse_chunks(chunks: &[(usize, yaml::Chunk<'_>)]) -> Vec<(usize, yaml::Document)> {
    let mut out = Vec::with_capacity(chunks.len());
    let mut docs = Vec::new();
    for (i, chunk) in chunks {
        chunk.parse_into(&mut docs);
        out.extend(docs.drain(..).map(|d| (*i, d)));
    }
    out
}

fn push_document(file: &Arc<str>, doc: yaml::Document, loaded: &mut Loaded) {
    let file = file.clone();
    match doc.root {
        Err(e) => loaded.errors.push(InputError {
            file: file.clone(),
            pos: e.pos,
            message: format!(
                "invalid YAML in the document starting at line {}: {}",
                doc.line, e.message
            ),
        }),
        Ok(root) if root.is_null() => {}
        Ok(root) if !root.is_map() => loaded.errors.push(InputError {
            file: file.clone(),
            pos: root.pos,
            message: "document is not a mapping, so not a Kubernetes object".to_owned(),
        }),
        Ok(root) => push_object(&file, root, loaded, 0),
    }
}

fn push_object(file: &Arc<str>, root: Node, loaded: &mut Loaded, depth: usize) {
    let Some(kind) = root.get("kind").and_then(Node::as_str).map(str::to_owned) else {
        return;
    };
    let is_list = kind == "List" || (kind.ends_with("List") && root.get("items").is_some());
    if is_list && depth < 4 {
        if let Some(items) = root.get("items") {
            if let yaml::Value::Seq(items) = items.value.clone() {
                for item in items {
                    if item.is_map() {
                        push_object(file, item, loaded, depth + 1);
                    } else if !item.is_null() {
                        loaded.errors.push(InputError {
                            file: file.clone(),
                            pos: item.pos,
                            message: format!(
                                "item of {kind} is not a mapping, so not a Kubernetes object"
                            ),
                        });
                    }
                }
            }
        }
        return;
    }
    let text = |path: &[&str]| {
        root.path(path)
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut name = text(&["metadata", "name"]);
    if name.is_empty() {
        name = text(&["metadata", "generateName"]);
    }
    loaded.objects.push(Object {
        file: file.clone(),
        api_version: text(&["apiVersion"]),
        namespace: text(&["metadata", "namespace"]),
        name,
        kind,
        root,
    });
}

impl Object {
    /// `metadata.annotations[key]`.
    pub fn annotation(&self, key: &str) -> Option<&Node> {
        self.root.path(&["metadata", "annotations", key])
    }

    /// `Kind/name` or `Kind/namespace/name`, for messages.
    pub fn display_name(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_expand_and_values_files_are_skipped() {
        let text = "replicaCount: 3\n---\napiVersion: v1\nkind: List\nitems:\n- kind: Service\n  metadata: {name: a}\n- kind: Pod\n  metadata: {name: b}\n";
        let loaded = load("x.yaml", text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let names: Vec<_> = loaded.objects.iter().map(Object::display_name).collect();
        assert_eq!(names, ["Service/a", "Pod/b"]);
        assert_eq!(loaded.objects[1].root.pos.line, 8);
    }

    #[test]
    fn scalar_documents_and_syntax_errors_are_input_errors_with_lines() {
        let text =
            "just text\n---\nkind: Pod\nmetadata: {name: ok}\n---\nkind: Pod\nmetadata: {name: [\n";
        let loaded = load("x.yaml", text);
        assert_eq!(loaded.objects.len(), 1);
        assert_eq!(loaded.errors.len(), 2);
        assert_eq!(loaded.errors[0].pos.line, 1);
        assert!(loaded.errors[1].pos.line >= 6, "{:?}", loaded.errors[1]);
        assert!(loaded.errors[1].to_string().starts_with("x.yaml:"));
    }
}
