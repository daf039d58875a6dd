//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`); not part of the API.
//!
//! The YAML parsers are crate-private; this re-exports the one check a fuzzer needs, so they
//! can stay that way.

pub use crate::yaml::fuzz::fast_path_agrees;
