//! Helpers shared by the integration tests.

#![allow(unused_imports, unreachable_pub)] // each test binary uses its own part of this module

pub use aegis_examples::process::ChildProcess;
