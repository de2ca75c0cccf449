//! The operations the server refused on one connection, for whoever needs to react to them
//! at once: async-nats reports a refused permission only to the connection's event
//! callback, while the operation itself just goes unanswered.

use tokio::sync::watch;

/// The latest permission violation the server reported on a connection made by
/// [`ConnectConfig::connect_observed`](super::ConnectConfig::connect_observed).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use aegis_runtime::connect::ConnectConfig;
///
/// let (nats, mut refused) = ConnectConfig::new("nats://127.0.0.1:4222")
///     .connect_observed()
///     .await?;
/// nats.publish("forbidden.subject", "x".into()).await?;
/// let violation = refused.next().await;
/// println!("the server said: {violation}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RefusedOperations {
    latest: watch::Receiver<Option<String>>,
}

/// The sending side, held by the connection's event callback.
#[derive(Debug, Clone)]
pub(super) struct RefusalSender(watch::Sender<Option<String>>);

pub(super) fn channel() -> (RefusalSender, RefusedOperations) {
    let (sender, latest) = watch::channel(None);
    (RefusalSender(sender), RefusedOperations { latest })
}

impl RefusalSender {
    /// Records the server's words for a refused operation.
    pub(super) fn refused(&self, violation: String) {
        self.0.send_replace(Some(violation));
    }
}

impl RefusedOperations {
    /// Waits for the next violation the server reports (`Permissions Violation for Publish
    /// to "…"`), in the server's own words; one reported before this call was made counts
    /// only if it was not seen yet. Pending forever once the connection is gone.
    pub async fn next(&mut self) -> String {
        loop {
            if self.latest.changed().await.is_err() {
                return std::future::pending().await;
            }
            if let Some(violation) = self.latest.borrow_and_update().clone() {
                return violation;
            }
        }
    }
}
