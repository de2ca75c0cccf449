//! Services shared by the example binaries and the integration tests.

pub mod orders;
