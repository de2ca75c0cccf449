//! A headless Chromium driven over the Chrome DevTools Protocol: open a page, evaluate
//! JavaScript in it, take a screenshot. The browser is a real child process, killed when
//! the [`Browser`] is dropped (also when the test fails).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_websockets::{MaybeTlsStream, Message, WebSocketStream};

/// How long Chromium has to start and say where its DevTools endpoint is.
const START_WITHIN: Duration = Duration::from_secs(30);

/// Where Debian's `chromium` package puts the browser; `AEGIS_CHROMIUM` overrides it.
pub(crate) fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AEGIS_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// One headless browser with one page.
pub(crate) struct Browser {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The DevTools session of the page.
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `binary` headless on `url` (a fresh profile, no network but loopback needed).
    pub(crate) async fn open(binary: &Path, url: &str) -> Result<Self, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("profile directory: {e}"))?;
        // The flags the machine notes give: without the background-networking ones,
        // Chromium tries hosts a closed network refuses, many at a time.
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: the renderer, GPU and zygote processes it starts go
            // down with it (see `kill_all`).
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        // Chromium prints `DevTools listening on ws://…` on stderr; the reader keeps
        // draining it afterwards so the browser never blocks on a full pipe.
        let (found, endpoint) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("ws://")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(line[at..].trim().to_owned());
                }
            }
        });
        let mut browser_child = KillOnDrop(Some(child));
        let endpoint = tokio::time::timeout(START_WITHIN, endpoint)
            .await
            .map_err(|_| format!("Chromium did not start within {START_WITHIN:?}"))?
            .map_err(|_| "Chromium exited before it listened".to_owned())?;
        let (socket, _) = tokio_websockets::ClientBuilder::new()
            .uri(&endpoint)
            .map_err(|e| format!("bad DevTools address {endpoint}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("cannot reach DevTools at {endpoint}: {e}"))?;
        let mut browser = Self {
            child: browser_child.0.take().ok_or("no child")?,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let targets = browser.send(None, "Target.getTargets", json!({})).await?;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .ok_or_else(|| format!("no page among {targets}"))?
            .to_owned();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({ "targetId": page, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no session")?
            .to_owned();
        Ok(browser)
    }

    /// The value of the JavaScript `expression` in the page (awaited if a promise).
    pub(crate) async fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let session = self.session.clone();
        let answer = self
            .send(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(thrown) = answer.get("exceptionDetails") {
            return Err(format!("{expression} threw: {thrown}"));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Writes a PNG of the page to `path`.
    pub(crate) async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        use base64::Engine as _;
        let session = self.session.clone();
        let shot = self
            .send(
                Some(&session),
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().ok_or("no image")?)
            .map_err(|e| format!("screenshot is not base64: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Sends one DevTools command and waits for its answer (events in between are
    /// skipped).
    async fn send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let message = self
                .socket
                .next()
                .await
                .ok_or_else(|| format!("{method}: the browser closed DevTools"))?
                .map_err(|e| format!("{method}: {e}"))?;
            let Some(text) = message.as_text() else {
                continue;
            };
            let answer: Value =
                serde_json::from_str(text).map_err(|e| format!("{method}: {e}: {text}"))?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_all(&mut self.child);
    }
}

/// Kills the browser's whole process group and reaps the browser.
fn kill_all(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the browser if starting it fails half-way.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            kill_all(child);
        }
    }
}
