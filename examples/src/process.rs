//! Example binaries as real child processes, for the tests, the benchmark and the demo.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aegis_runtime::testing::send_signal;
use nix::sys::signal::Signal;

/// A binary of the workspace, next to the running one (a binary in `target/debug`, or a
/// test in `target/debug/deps`).
///
/// # Panics
/// When it is not built; the message says how to build it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running binary");
    let found = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "{name} is missing next to {}: build it with `cargo build -p aegis-examples --bins` (scripts/test does)",
            exe.display()
        )
    })
}

/// A child process, killed (SIGKILL) and reaped on drop, also when its owner panics.
pub struct ChildProcess {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    /// Starts `binary` with `args` and waits (up to 30 s) for a stdout line starting with
    /// `ready`, which it returns.
    ///
    /// The child logs at `warn` unless `RUST_LOG` is set for the parent, so the output of
    /// a test or a benchmark is not buried under the logs of its children.
    pub fn start(binary: &str, args: &[&str]) -> (Self, String) {
        let mut command = Command::new(workspace_binary(binary));
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = Self {
            child: Some(child),
            lines,
        };
        let ready = process.wait_for_line("ready", Duration::from_secs(30));
        (process, ready)
    }

    /// Waits for the next stdout line starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(err) => panic!("no line starting with {prefix:?} within {within:?}: {err}"),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends `signal` to the process; a SIGSTOP has taken effect when this returns.
    pub fn signal(&self, signal: Signal) {
        send_signal(self.pid(), signal).expect("signal");
    }

    /// Kills it as a crash would (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to `within`) for it to exit by itself; returns whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
