//! The README's quick start, as a new user meets it: a crate of its own outside this
//! workspace, with the README's `[dependencies]` block verbatim and its code as
//! `src/main.rs`, built with cargo and run against a real nats-server. The only addition is
//! a `[patch.crates-io]` that points `aegis-runtime` at this checkout (it is not published
//! yet), so a dependency the README forgets, a feature it leaves out or an API the example
//! misuses fails here as it would for the user.
//!
//! The crate is built offline with this workspace's `Cargo.lock` (so the same versions are
//! used, and nothing is fetched), into this workspace's target directory (cargo releases its
//! lock before it runs the tests), where the dependencies built with the same features are
//! reused.

#![allow(clippy::print_stdout)] // the build's output is shown when it fails

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aegis_runtime::subject::{self, ServiceName};
use aegis_runtime::testing::NatsServer;
use futures_util::TryStreamExt;

/// The workspace root (this crate is `tests/`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The first fenced block of `language` after the "## Quick start" heading.
fn quick_start_block(readme: &str, language: &str) -> String {
    let section = &readme[readme
        .find("## Quick start")
        .expect("the README has a quick start")..];
    let fence = format!("```{language}");
    let start = section
        .find(&fence)
        .unwrap_or_else(|| panic!("no {fence} block in the quick start"));
    let body = &section[start..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    body[..body.find("\n```").expect("a closed block")].to_owned() + "\n"
}

/// Writes the scratch crate: the README's dependency block and code, nothing else of ours.
fn write_scratch_crate(dir: &Path) {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README");
    let dependencies = quick_start_block(&readme, "toml");
    assert!(
        dependencies.trim_start().starts_with("[dependencies]"),
        "the README's toml block is not a [dependencies] block:\n{dependencies}"
    );
    let code = quick_start_block(&readme, "rust");
    let manifest = format!(
        "[package]\nname = \"quick-start\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         # Not a member of the Aegis workspace.\n[workspace]\n\n{dependencies}\n\
         [patch.crates-io]\naegis-runtime = {{ path = {:?} }}\n",
        workspace().join("aegis-runtime")
    );
    std::fs::create_dir_all(dir.join("src")).expect("src/");
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::write(dir.join("src/main.rs"), code).expect("main.rs");
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).expect("Cargo.lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_builds_as_a_crate_of_its_own_and_runs() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    write_scratch_crate(scratch.path());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let build = tokio::process::Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(scratch.path())
        .env("CARGO_TARGET_DIR", workspace().join("target"))
        .env_remove("RUSTFLAGS")
        .kill_on_drop(true)
        .output()
        .await
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "the quick start does not build as a crate of its own:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );

    let server = NatsServer::start().await.expect("nats-server");
    let binary = workspace().join("target/debug/quick-start");
    let run = tokio::process::Command::new(binary)
        .env("NATS_URL", server.url())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the quick start ends within a minute")
        .expect("the quick start runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the quick start failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    // Four answers, in order, from both instances (the client takes them in turn).
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "four answers expected:\n{stdout}");
    let mut instances = std::collections::BTreeSet::new();
    for (line, text) in lines.iter().zip(["one", "two", "three", "four"]) {
        let instance = line
            .strip_prefix(&format!("{text} (from "))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not the answer to {text:?}: {line:?}"));
        instances.insert(instance.to_owned());
    }
    assert_eq!(instances.len(), 2, "both instances answer: {instances:?}");

    // The runners were stopped: no instance is left in the registry to look ACTIVE.
    let nats = server.connect().await.expect("connect");
    let registry = async_nats::jetstream::new(nats)
        .get_key_value(subject::REGISTRY_BUCKET)
        .await
        .expect("the registry bucket");
    let echo = ServiceName::new("echo").expect("name");
    let filter = subject::registry_service_filter(&echo);
    let prefix = filter.trim_end_matches('*');
    let keys: Vec<String> = registry
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    let live: Vec<&String> = keys.iter().filter(|key| key.starts_with(prefix)).collect();
    assert!(
        live.is_empty(),
        "the quick start left registry entries behind: {live:?}"
    );
}
