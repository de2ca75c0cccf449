//! Finding a nats-server binary that is new enough.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::ServerError;

/// Environment variable naming the nats-server binary to use.
pub const BINARY_ENV: &str = "AEGIS_NATS_SERVER";

/// Oldest nats-server Aegis works with: per-message TTL on KV entries arrived in 2.11.
pub const MIN_VERSION: (u32, u32) = (2, 11);

/// Where `scripts/install-nats-server` puts the binary, relative to the repository root.
const INSTALL_DIR: &str = ".tools/nats-server/bin/nats-server";

/// The command that installs nats-server, for error messages.
pub(crate) const INSTALL_HINT: &str = "run `scripts/install-nats-server` in the Aegis repository \
     (installs nats-server 2.15.1 into .tools/), or set AEGIS_NATS_SERVER to a nats-server \
     >= 2.11 binary, or put one on PATH";

/// Finds nats-server once per process: `$AEGIS_NATS_SERVER`, then the repository's
/// `.tools/` install (next to this crate, then above the current directory), then `PATH`.
/// The binary must be at least [`MIN_VERSION`].
pub(crate) fn default_binary() -> Result<PathBuf, ServerError> {
    static FOUND: OnceLock<Result<PathBuf, ServerError>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let env = std::env::var_os(BINARY_ENV).map(PathBuf::from);
            let cwd = std::env::current_dir().ok();
            let path = std::env::var_os("PATH");
            let candidates = candidates(env, cwd.as_deref(), path.as_deref());
            let found = candidates.iter().find(|p| p.is_file()).cloned();
            match found {
                Some(binary) => check_version(&binary).map(|_| binary),
                None => Err(ServerError::NotFound {
                    searched: candidates.iter().map(|p| p.display().to_string()).collect(),
                }),
            }
        })
        .clone()
}

/// The places to look, in order. An explicit `$AEGIS_NATS_SERVER` is the only candidate.
fn candidates(
    env: Option<PathBuf>,
    cwd: Option<&Path>,
    path: Option<&std::ffi::OsStr>,
) -> Vec<PathBuf> {
    if let Some(explicit) = env {
        return vec![explicit];
    }
    let mut out = vec![
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(INSTALL_DIR),
    ];
    if let Some(cwd) = cwd {
        out.extend(cwd.ancestors().map(|dir| dir.join(INSTALL_DIR)));
    }
    if let Some(path) = path {
        out.extend(std::env::split_paths(path).map(|dir| dir.join("nats-server")));
    }
    out
}

/// Runs `binary --version` and checks it is at least [`MIN_VERSION`].
pub(crate) fn check_version(binary: &Path) -> Result<(u32, u32, u32), ServerError> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|source| ServerError::Spawn {
            binary: binary.to_owned(),
            source: source.into(),
        })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let version = parse_version(&text).ok_or_else(|| ServerError::TooOld {
        binary: binary.to_owned(),
        version: format!("unrecognised `--version` output {text:?}"),
    })?;
    if (version.0, version.1) < MIN_VERSION {
        return Err(ServerError::TooOld {
            binary: binary.to_owned(),
            version: format!("{}.{}.{}", version.0, version.1, version.2),
        });
    }
    Ok(version)
}

/// Parses `nats-server: v2.15.1` (or `v2.15.1-RC.1`) into its numbers.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let version = text.rsplit('v').next()?;
    let mut numbers = version.split(['.', '-']).map(|n| n.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.2"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn env_var_wins_then_repo_then_path() {
        let only = candidates(Some("/x/nats".into()), Some(Path::new("/a/b")), None);
        assert_eq!(only, vec![PathBuf::from("/x/nats")]);

        let path = std::env::join_paths(["/usr/bin", "/opt/bin"]).expect("paths");
        let all = candidates(None, Some(Path::new("/a/b")), Some(&path));
        assert!(all[0].ends_with(INSTALL_DIR), "{all:?}");
        assert!(all.contains(&PathBuf::from("/a/b").join(INSTALL_DIR)));
        assert!(all.contains(&PathBuf::from("/a").join(INSTALL_DIR)));
        assert_eq!(all[all.len() - 2], PathBuf::from("/usr/bin/nats-server"));
        assert_eq!(all[all.len() - 1], PathBuf::from("/opt/bin/nats-server"));
    }

    #[test]
    fn a_missing_binary_says_how_to_install() {
        let err = ServerError::NotFound {
            searched: vec!["/nowhere/nats-server".into()],
        };
        let message = err.to_string();
        assert!(message.contains("/nowhere/nats-server"), "{message}");
        assert!(message.contains("scripts/install-nats-server"), "{message}");
    }
}
