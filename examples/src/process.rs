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
    /// How it exited, once [`ChildProcess::wait_exit`] saw it.
    status: Option<std::process::ExitStatus>,
}

impl ChildProcess {
    /// Starts `binary` with `args` and waits (up to 30 s) for a stdout line starting with
    /// `ready`, which it returns (see [`ChildProcess::start_until`]).
    ///
    /// The child logs at `warn` unless `RUST_LOG` is set for the parent, so the output of
    /// a test or a benchmark is not buried under the logs of its children.
    pub fn start(binary: &str, args: &[&str]) -> (Self, String) {
        Self::start_until(binary, args, "ready")
    }

    /// Starts `binary` with `args` and waits (up to 30 s) for a stdout line starting with
    /// `ready`, which it returns.
    pub fn start_until(binary: &str, args: &[&str], ready: &str) -> (Self, String) {
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
            status: None,
        };
        let ready = process.wait_for_line(ready, Duration::from_secs(30));
        (process, ready)
    }

    /// Owns `child`, whose stdout is read elsewhere.
    fn wrap(child: Child) -> Self {
        Self {
            child: Some(child),
            lines: mpsc::channel().1,
            status: None,
        }
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

    /// Whether it has exited (by itself, or by a signal), without waiting.
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                self.status = Some(status);
                self.child = None;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Waits (up to `within`) for it to exit by itself; returns whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.status = Some(status);
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// How it exited, once [`ChildProcess::wait_exit`] saw it exit.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.status
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a program run by [`run_to_exit`] ended.
#[derive(Debug)]
pub struct Finished {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// Runs the workspace binary `binary` with `args` until it exits, at most `within`.
///
/// # Panics
/// When it cannot be started or runs longer than `within` (it is killed then).
pub fn run_to_exit(binary: &str, args: &[&str], within: Duration) -> Finished {
    use std::io::Read;
    let mut child = Command::new(workspace_binary(binary))
        .args(args)
        .env_remove("NATS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read both pipes on threads, so a chatty child never blocks on a full pipe.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut process = ChildProcess::wrap(child);
    let exited = process.wait_exit(within);
    let status = process.status.take();
    drop(process); // kills it if it is still running
    assert!(exited, "{binary} {args:?} ran longer than {within:?}");
    Finished {
        success: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
