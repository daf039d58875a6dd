//! `lameduck verify` end to end, in one test binary (linked once): rollouts behind the built-in
//! routers, client models, manifests as input, bad input, the HTML report in a real browser and
//! the real HAProxy and nginx routers. Real child processes on loopback; one run at a time
//! (`util::serial`), as each drives its own load.

#![allow(clippy::unwrap_used)]

mod html;
mod rollouts;
mod routers;
mod util;
