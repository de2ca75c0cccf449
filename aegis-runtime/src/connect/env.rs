//! The conventional NATS environment variables, as the NATS CLI and other clients read them.

use std::path::PathBuf;

use super::{ConnectConfig, Nkey, Secret};

impl ConnectConfig {
    /// A config from the environment: `NATS_URL` (servers, comma-separated; default
    /// `nats://127.0.0.1:4222`), `NATS_USER` and `NATS_PASSWORD`, `NATS_TOKEN`, `NATS_NKEY`
    /// (a seed file, or the seed), `NATS_CREDS` (a creds file), `NATS_CA`, `NATS_CERT` and
    /// `NATS_KEY` (PEM files). Empty variables count as unset.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup` (for tests,
    /// which must not change the process environment).
    pub(super) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let mut config = Self::default();
        if let Some(url) = var("NATS_URL") {
            config.servers.push(url);
        }
        config.user = var("NATS_USER");
        config.password = var("NATS_PASSWORD").map(Secret::new);
        config.token = var("NATS_TOKEN").map(Secret::new);
        config.nkey = var("NATS_NKEY").map(Nkey::from_value);
        config.creds = var("NATS_CREDS").map(PathBuf::from);
        config.tls_ca = var("NATS_CA").map(PathBuf::from);
        config.tls_cert = var("NATS_CERT").map(PathBuf::from);
        config.tls_key = var("NATS_KEY").map(PathBuf::from);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conventional_variables_are_read() {
        let config = ConnectConfig::from_lookup(|name| {
            match name {
                "NATS_URL" => Some("nats://a:1,nats://b:2"),
                "NATS_USER" => Some("svc"),
                "NATS_PASSWORD" => Some("pw"),
                "NATS_CA" => Some("/ca.pem"),
                "NATS_TOKEN" => Some(" "),
                _ => None,
            }
            .map(str::to_owned)
        });
        assert_eq!(config.servers, ["nats://a:1,nats://b:2"]);
        assert_eq!(config.user.as_deref(), Some("svc"));
        assert_eq!(config.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(config.tls_ca, Some(PathBuf::from("/ca.pem")));
        assert!(config.token.is_none(), "an empty variable is unset");
    }

    #[test]
    fn no_variable_means_the_default_server() {
        let config = ConnectConfig::from_lookup(|_| None);
        assert_eq!(config.servers_shown(), super::super::DEFAULT_SERVER);
    }
}
