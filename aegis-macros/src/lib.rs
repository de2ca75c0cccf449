//! Procedural macros of Aegis: `#[service]` and its method attributes.
//!
//! Use them through `aegis-runtime`, which re-exports them and holds every piece of logic
//! the generated code calls. The crate is laid out as parse → model → validate → expand.
