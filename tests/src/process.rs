//! Real processes of the project's binaries: started with arguments, logged to files,
//! killed with SIGKILL (a crash) or SIGTERM (a graceful stop), restarted on the same port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A binary of this workspace, built next to the running executable: `target/<profile>/`,
/// which holds this crate's own binaries and is the parent of the tests' `deps/`.
/// `SAGAFLOW_BIN_DIR` names another folder.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = match std::env::var_os("SAGAFLOW_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let here = exe.parent().context("the executable has no folder")?;
            if here.ends_with("deps") { here.parent().context("test executable has no target dir")? } else { here }
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --workspace --bins` (./scripts/test.sh does; add \
             --release for a release run)",
            path.display()
        );
    }
    Ok(path)
}

/// A free port on loopback (bound then released; the tests start the process on it at once).
///
/// Picked at random below Linux's ephemeral range (32768-60999 by default), not with a bind
/// to port 0: a port from that range, once released, can be taken by any outgoing connection
/// of the tests running beside (each opens many to PostgreSQL and gRPC), and the process
/// started on it then failed with "Address already in use".
pub fn free_port() -> u16 {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    for _ in 0..64 {
        let port = rng.gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A running (or stopped) process of ours.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    pub addr: SocketAddr,
    binary: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How to reach it when it serves TLS (CA, and a client certificate if it asks for one).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Process {
    pub fn start(
        name: &str,
        binary: PathBuf,
        addr: SocketAddr,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log_dir: &Path,
    ) -> anyhow::Result<Process> {
        let mut p = Process {
            name: name.to_owned(),
            addr,
            binary,
            args,
            envs,
            log: log_dir.join(format!("{name}.log")),
            child: None,
            tls: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.binary);
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        command.env_remove("SAGAFLOW_SERVER");
        let child = command.spawn().with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until the process answers gRPC health checks.
    pub async fn ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let url = self.url();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited with {status} before it was ready; log: {}\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            let mut endpoint =
                tonic::transport::Endpoint::from_shared(url.clone())?.connect_timeout(Duration::from_millis(200));
            if let Some(tls) = &self.tls {
                endpoint = endpoint.tls_config(tls.clone())?;
            }
            if let Ok(channel) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
                if answer.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not become ready within {limit:?}; log: {}\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A crash: SIGKILL, no cleanup of any kind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A graceful stop: SIGTERM, then wait.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same address.
    pub async fn restart(&mut self, limit: Duration) -> anyhow::Result<()> {
        self.respawn()?;
        self.ready(limit).await
    }

    /// Start again on the same address without waiting for it to be ready.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// It serves TLS: reach it (health checks, [`Process::url`]) with `tls`.
    pub fn use_tls(&mut self, tls: tonic::transport::ClientTlsConfig) {
        self.tls = Some(tls);
    }

    /// The TLS settings it is reached with, if it serves TLS.
    pub fn tls(&self) -> Option<&tonic::transport::ClientTlsConfig> {
        self.tls.as_ref()
    }

    /// The operating system's id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
