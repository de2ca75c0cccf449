//! NATS headers Aegis adds to messages. Additions never go in the envelope: the Python SDK
//! rejects unknown fields.

/// On a reply: the id of the instance that answered.
pub const INSTANCE_ID: &str = "Aegis-Instance";
/// On a reply of an exclusive method: the fencing term it ran under.
pub const TERM: &str = "Aegis-Term";
