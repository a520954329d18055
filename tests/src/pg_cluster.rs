//! A private PostgreSQL cluster for tests that break the database: created with `initdb` in a
//! temporary directory, started on a free port, stopped (cleanly or as a crash) and started
//! again on the same port and data directory, and removed when dropped. Never the machine's
//! own server, which other tests share.
//!
//! `initdb` refuses to run as root, so as root the cluster runs as the `postgres` account
//! (or a `sagaflow-pg` account created for it), as `scripts/throwaway-postgres.sh` does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::process::free_port;

/// How `pg_ctl stop` stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// `-m fast`: clients are disconnected, a checkpoint is written.
    Fast,
    /// `-m immediate`: every server process quits at once, as in a crash; the next start
    /// replays the WAL.
    Immediate,
}

impl StopMode {
    pub fn label(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate (crash)",
        }
    }
}

/// A PostgreSQL cluster of our own.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// The account the server runs as when we are root (`runuser -u` it); `None` otherwise.
    run_as: Option<String>,
    /// The database user (the account name, trust authentication).
    user: String,
    pub port: u16,
    running: bool,
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; \
         install PostgreSQL (Debian: apt-get install postgresql)",
    )
}

fn command_output(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn is_root() -> bool {
    command_output("id", &["-u"]).is_ok_and(|uid| uid == "0")
}

/// The account to run the server as when we are root: `postgres`, else `sagaflow-pg`
/// (created if missing).
fn server_account() -> anyhow::Result<String> {
    if command_output("id", &["postgres"]).is_ok() {
        return Ok("postgres".into());
    }
    let name = "sagaflow-pg";
    if command_output("id", &[name]).is_err() {
        command_output("useradd", &["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
            .context("creating an account for PostgreSQL (initdb refuses to run as root)")?;
    }
    Ok(name.into())
}

impl PgCluster {
    /// `initdb` a new cluster in a fresh temporary directory and start it on a free port.
    pub fn create() -> anyhow::Result<PgCluster> {
        let bin = find_bin_dir()?;
        let dir =
            std::env::temp_dir().join(format!("sagaflow-pg-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
        std::fs::create_dir_all(&dir)?;
        let (run_as, user) = if is_root() {
            let account = server_account()?;
            let uid: u32 = command_output("id", &["-u", &account])?.parse()?;
            let gid: u32 = command_output("id", &["-g", &account])?.parse()?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).context("handing the data directory over")?;
            (Some(account.clone()), account)
        } else {
            (None, command_output("id", &["-un"])?)
        };
        let mut cluster = PgCluster { bin, dir, run_as, user, port: 0, running: false };
        let data = cluster.data_dir();
        let status = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", &cluster.user, "-A", "trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        if !status.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&status.stderr));
        }
        // A free port can be taken between our check and the server's bind: try a few.
        let mut last = None;
        for _ in 0..10 {
            cluster.port = free_port();
            match cluster.start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no port")).context("starting the private PostgreSQL"))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A command run as the server's account.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match &self.run_as {
            Some(account) => {
                let mut c = Command::new("runuser");
                c.args(["-u", account, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// The URL of database `name` as the cluster's superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{name}", self.user, self.port)
    }

    /// The URL of the `postgres` database, for creating others.
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// Start the server (same port, same data) and wait until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        // fsync=off: the suite kills processes, never the machine, and a committed
        // transaction's WAL is in the kernel's page cache at commit, which outlives any
        // process. synchronous_commit stays on: with it off, an immediate stop could lose
        // commits the orchestrator was told were durable, a fault of the setup, not of ours.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            bail!(
                "pg_ctl start failed on port {}: {}\n{}",
                self.port,
                String::from_utf8_lossy(&output.stderr).trim(),
                tail(&self.log_path(), 20)
            );
        }
        self.running = true;
        Ok(())
    }

    /// Stop the server and wait until it is gone.
    pub fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        let m = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "60", "-m", m, "stop"])
            .stdin(Stdio::null())
            .output()?;
        if !output.status.success() {
            bail!("pg_ctl stop -m {m} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        self.running = false;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.running
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop(StopMode::Immediate);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
