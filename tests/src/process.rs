//! Real processes of the project's binaries: started with arguments, logged to files,
//! killed with SIGKILL (a crash) or SIGTERM (a graceful stop), restarted on the same port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A binary of this workspace, built next to the test executable (`target/<profile>/`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("test executable has no target dir")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first with `cargo build --workspace --bins` (./scripts/test.sh does)",
            path.display()
        );
    }
    Ok(path)
}

/// A free port on loopback (bound then released; the tests start the process on it at once).
pub fn free_port() -> u16 {
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
        let url = format!("http://{}", self.addr);
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
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect_timeout(Duration::from_millis(200))
                .connect()
                .await
            {
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
        self.kill();
        self.spawn()?;
        self.ready(limit).await
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
        format!("http://{}", self.addr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
