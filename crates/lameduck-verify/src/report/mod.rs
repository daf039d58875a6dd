//! Reports: terminal summary, JSON, self-contained HTML.

mod html;
mod json;
mod terminal;

pub use html::render_html;
pub use json::render_json;
pub use terminal::render_terminal;
