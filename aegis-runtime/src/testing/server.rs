//! One nats-server process on loopback, killed on drop.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use super::{ServerError, binary};

/// How long a server may take to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A real nats-server with JetStream on `127.0.0.1`, a free port and a temporary store.
///
/// The process is killed when the guard is dropped, also when a test panics. It can be
/// stopped, killed, paused and restarted on the same port and store, for fault tests.
///
/// ```no_run
/// use aegis_runtime::testing::NatsServer;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = NatsServer::start().await?;
/// let client = async_nats::connect(server.url()).await?;
/// client.publish("greeting", "hello".into()).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    config: String,
    child: Option<Child>,
}

/// Options of a [`NatsServer`]: the binary, the port and extra config (auth, TLS).
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until `.start().await`"]
pub struct NatsServerBuilder {
    binary: Option<PathBuf>,
    port: Option<u16>,
    cluster: Option<ClusterSettings>,
    extra_config: Vec<String>,
    /// Start the server without JetStream, as a plain core-NATS server.
    no_jetstream: bool,
}

/// Where a server sits in a cluster: its route port and the route ports of its peers.
#[derive(Debug, Clone)]
pub(super) struct ClusterSettings {
    pub(super) name: String,
    pub(super) server_name: String,
    pub(super) route_port: u16,
    pub(super) peer_route_ports: Vec<u16>,
}

impl NatsServerBuilder {
    /// Uses this nats-server binary instead of searching for one.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Appends this text to the generated nats-server config file, e.g. an `authorization`
    /// or `tls` block, so tests can run against a server that demands credentials.
    ///
    /// The text is written verbatim; several calls append several blocks in order.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.extra_config.push(text.into());
        self
    }

    /// Starts the server without JetStream (no `jetstream` block in its config): a plain
    /// core-NATS server, for tests of what a registry, an election or a tool does when
    /// there is no JetStream.
    pub fn without_jetstream(mut self) -> Self {
        self.no_jetstream = true;
        self
    }

    pub(super) fn cluster(mut self, settings: ClusterSettings) -> Self {
        self.cluster = Some(settings);
        self
    }

    /// Starts the server and waits until it accepts connections.
    ///
    /// # Errors
    /// [`ServerError`] when no suitable binary is found, it cannot be spawned, it exits, or it
    /// does not accept connections within 15 s. The message includes the server's log.
    pub async fn start(self) -> Result<NatsServer, ServerError> {
        let binary = match self.binary {
            Some(binary) => {
                binary::check_version(&binary)?;
                binary
            }
            None => binary::default_binary()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("aegis-nats-")
            .tempdir()
            .map_err(|e| ServerError::io("create the store directory", e))?;
        let mut server = NatsServer {
            binary,
            port: 0,
            dir,
            config: String::new(),
            child: None,
        };
        // A port picked as free can be taken by someone else before the server binds it:
        // then try again on a fresh one. A port the caller chose is tried once.
        let attempts = if self.port.is_some() { 1 } else { 3 };
        let mut attempt = 1;
        loop {
            server.port = match self.port {
                Some(port) => port,
                None => free_port()?,
            };
            server.config = render_config(
                server.port,
                server.dir.path(),
                self.cluster.as_ref(),
                !self.no_jetstream,
            );
            for extra in &self.extra_config {
                server.config.push_str(extra);
                server.config.push('\n');
            }
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(err) if attempt >= attempts => return Err(err),
                Err(err) => {
                    tracing::debug!(port = server.port, %err, "nats-server did not start, retrying");
                    attempt += 1;
                }
            }
        }
    }
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port.
    ///
    /// # Errors
    /// As [`NatsServerBuilder::start`].
    pub async fn start() -> Result<Self, ServerError> {
        Self::builder().start().await
    }

    /// Options for a server: binary, port.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// The client URL, `nats://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory holding the JetStream store, the config file and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects a client to this server.
    ///
    /// # Errors
    /// The client's connection error.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::connect(self.url()).await
    }

    /// Whether the process is alive (it may be paused).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit; kills it if it takes
    /// longer than 10 s. Does nothing if it is not running.
    pub async fn stop(&mut self) {
        let Some(pid) = self.pid() else { return };
        self.resume();
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.is_running() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.kill();
    }

    /// Kills the server at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered. Returns
    /// once the kernel reports it stopped.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = super::send_signal(pid, signal);
        }
    }

    /// Starts the server again on the same port and store, stopping it first if it runs.
    /// JetStream data written before survives.
    ///
    /// # Errors
    /// As [`NatsServerBuilder::start`].
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await;
        self.spawn_and_wait().await
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        let config_path = self.dir.path().join("nats-server.conf");
        std::fs::write(&config_path, &self.config)
            .map_err(|e| ServerError::io("write the server config", e))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| ServerError::io("open the server log", e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| ServerError::io("open the server log", e))?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| ServerError::Spawn {
                binary: self.binary.clone(),
                source: e.into(),
            })?;
        self.child = Some(child);
        let ready = self.wait_until_ready().await;
        if ready.is_err() {
            self.kill();
        }
        ready
    }

    /// Waits until the server sends its `INFO` greeting on a fresh TCP connection.
    async fn wait_until_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(ServerError::Exited { log: self.log() });
            }
            if greets(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady {
                    timeout: READY_TIMEOUT,
                    log: self.log(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn greets(port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_millis(500), connect).await else {
        return false;
    };
    let mut greeting = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut greeting));
    matches!(read.await, Ok(Ok(_))) && &greeting == b"INFO "
}

/// A port that was free a moment ago.
pub(super) fn free_port() -> Result<u16, ServerError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| ServerError::io("find a free port", e))
}

fn render_config(
    port: u16,
    dir: &Path,
    cluster: Option<&ClusterSettings>,
    jetstream: bool,
) -> String {
    let store = dir.join("jetstream");
    let server_name =
        cluster.map_or_else(|| format!("aegis-test-{port}"), |c| c.server_name.clone());
    let mut config = format!(
        "server_name: {server_name:?}\n\
         listen: \"127.0.0.1:{port}\"\n"
    );
    if jetstream {
        config.push_str(&format!(
            "jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 268435456\n  max_file_store: 1073741824\n}}\n"
        ));
    }
    if let Some(cluster) = cluster {
        let routes: Vec<String> = cluster
            .peer_route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        config.push_str(&format!(
            "cluster {{\n  name: {:?}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
            cluster.name,
            cluster.route_port,
            routes.join(", ")
        ));
    }
    config
}
