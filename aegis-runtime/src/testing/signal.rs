//! Signals to test processes that take effect before the call returns.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long [`send_signal`] waits for a stop or a continue to show in the process state.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `signal` to process `pid`. For `SIGSTOP` it returns only once the kernel reports
/// the process stopped, and for `SIGCONT` once it runs again.
///
/// `kill(2)` only queues a signal: a multi-threaded server can still answer a request or
/// two after it returns, which makes "a paused server answers nothing" flaky unless the
/// caller waits for the state change.
///
/// # Errors
/// When the signal cannot be sent (no such process, no permission).
///
/// # Examples
/// ```no_run
/// use aegis_runtime::testing::send_signal;
/// use nix::sys::signal::Signal;
///
/// # fn pid() -> u32 { 1 }
/// send_signal(pid(), Signal::SIGSTOP)?; // frozen when this returns
/// send_signal(pid(), Signal::SIGCONT)?; // running again
/// # Ok::<(), nix::Error>(())
/// ```
pub fn send_signal(pid: u32, signal: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(pid as i32), signal)?;
    let wanted_stopped = match signal {
        Signal::SIGSTOP => true,
        Signal::SIGCONT => false,
        _ => return Ok(()),
    };
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while Instant::now() < deadline {
        match is_stopped(pid) {
            Some(stopped) if stopped != wanted_stopped => {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Reached, or the process is gone (nothing left to wait for).
            _ => break,
        }
    }
    Ok(())
}

/// Whether the process is stopped by a signal, from `/proc/{pid}/stat`; `None` when it
/// cannot be read (process gone, no procfs).
fn is_stopped(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ...": comm may contain spaces and parentheses, so the state is the
    // first field after the last ')'.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    Some(state == "T")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_process_reports_stopped_until_continued() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert_eq!(is_stopped(pid), Some(false));
        send_signal(pid, Signal::SIGSTOP).expect("stop");
        assert_eq!(
            is_stopped(pid),
            Some(true),
            "stopped when send_signal returns"
        );
        send_signal(pid, Signal::SIGCONT).expect("continue");
        assert_eq!(
            is_stopped(pid),
            Some(false),
            "running when send_signal returns"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
