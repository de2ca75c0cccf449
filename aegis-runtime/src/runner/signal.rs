//! The operator's shutdown signals: SIGINT and SIGTERM (Ctrl-C only where there are no
//! Unix signals), listened for once for the whole stop so that a second one is seen too.

/// A shutdown signal that was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (what `kill`, systemd and Kubernetes send).
    #[cfg_attr(not(unix), allow(dead_code))]
    Terminate,
}

impl ShutdownSignal {
    /// The signal's name, for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        }
    }

    /// The exit code of a process ended by this signal, as shells report it: 128 + the
    /// signal's number.
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            ShutdownSignal::Interrupt => 128 + 2,
            ShutdownSignal::Terminate => 128 + 15,
        }
    }
}

/// SIGINT and SIGTERM, registered once.
///
/// Registering replaces the default action (terminate the process) for the rest of its
/// life, and a listener registered after a signal arrived does not see it: so the same
/// listeners serve the first and the second signal.
#[derive(Debug)]
pub(crate) struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    /// Starts listening. A signal that cannot be listened for keeps its default action
    /// (it ends the process), which is logged.
    pub(crate) fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(listener) => Some(listener),
                Err(err) => {
                    tracing::warn!(signal = name, %err, "cannot listen for the signal; it ends the process without a graceful stop");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub(crate) async fn next(&mut self) -> ShutdownSignal {
        #[cfg(unix)]
        {
            async fn next(listener: &mut Option<tokio::signal::unix::Signal>) {
                match listener {
                    Some(listener) => {
                        if listener.recv().await.is_none() {
                            // The signal driver is gone (the runtime shuts down): no
                            // signal can come any more.
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => ShutdownSignal::Interrupt,
                () = next(&mut self.terminate) => ShutdownSignal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                // Ctrl-C cannot be listened for: it keeps its default action.
                std::future::pending::<()>().await;
            }
            ShutdownSignal::Interrupt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(ShutdownSignal::Interrupt.exit_code(), 130);
        assert_eq!(ShutdownSignal::Terminate.exit_code(), 143);
    }
}
