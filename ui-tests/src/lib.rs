//! Compile-fail and compile-pass cases of the Aegis macros; see `tests/ui.rs`.
