//! The fast path checked against the general parser over any text, for the fuzz targets
//! (feature `fuzzing`). The fast path's promise is that wherever it answers, its tree is the
//! general parser's; the property test checks that on mutated manifests, a fuzzer on
//! whatever coverage leads it to.

use super::fast;
use super::general::parse_general;
use super::{Document, parse_stream, split_documents};

/// Parses `text` as lint does and compares, for every document chunk the fast path answers,
/// its documents with the general parser's. Returns how many chunks the fast path answered,
/// or a description of the first chunk where the two differ.
pub fn fast_path_agrees(text: &str) -> Result<usize, String> {
    // The whole path, for its never-panic promise.
    drop(parse_stream(text));
    let mut answered = 0;
    for chunk in split_documents(text) {
        let Some(fast) = fast::parse(chunk.text, chunk.first_line) else {
            continue;
        };
        answered += 1;
        let fast: Vec<Document> = fast
            .into_iter()
            .map(|(line, root)| Document {
                line,
                root: Ok(root),
            })
            .collect();
        let mut general = Vec::new();
        parse_general(chunk.text, chunk.first_line, &mut general);
        if fast != general {
            return Err(format!(
                "chunk {:?} at line {}:\nfast:    {fast:?}\ngeneral: {general:?}",
                chunk.text, chunk.first_line
            ));
        }
    }
    Ok(answered)
}
