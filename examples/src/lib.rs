//! Services shared by the example binaries and the integration tests.

pub mod failover;
pub mod orders;
pub mod process;
