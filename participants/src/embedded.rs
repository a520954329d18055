//! Running participants inside another Rust process (the `sagaflow demo` command, tests):
//! [`serve_embedded`] serves some services from one database URL on a listener the caller
//! bound, until a future completes; [`EmbeddedParticipants`] starts every service on its own
//! SQLite file under a data directory and its own `127.0.0.1:0` port, and reports where.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, DEFAULT_MAX_CONNECTIONS};
use crate::server::{ServeError, ServeOptions, ServiceKind, prepare, serve};

/// Serves `options.services` from the database `database_url` names (`postgres://...`,
/// `sqlite:///path/x.db` or a file path; a SQLite file is created if missing) on `listener`
/// until `shutdown` completes, then finishes in-flight calls and closes the database.
/// Migrations are applied first, and the demo catalog seeded when `seed_demo_catalog` is set
/// and the inventory is served. Errors before serving (database, migrations) return at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), sagaflow_participants::ServeError> {
/// use sagaflow_participants::{ServeOptions, ServiceKind, serve_embedded};
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
/// let addr = listener.local_addr().expect("bound");
/// let options = ServeOptions::new(vec![ServiceKind::Payment]);
/// // ... hand `addr` to whoever calls the service, then:
/// serve_embedded(options, "sqlite:///tmp/payment.db", listener, false, tokio::signal::ctrl_c()).await
/// # }
/// ```
pub async fn serve_embedded<F>(
    options: ServeOptions,
    database_url: &str,
    listener: TcpListener,
    seed_demo_catalog: bool,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future + Send,
{
    let backend = Backend::open(database_url).await?;
    let result = async {
        prepare(&backend, &options.services, seed_demo_catalog, options.clock.clone()).await?;
        let token = CancellationToken::new();
        let serving = serve(backend.clone(), options, listener, token.clone());
        tokio::pin!(serving);
        tokio::select! {
            result = &mut serving => result,
            _ = shutdown => {
                token.cancel();
                serving.await
            }
        }
    }
    .await;
    backend.close().await;
    result
}

/// Participant services running inside this process, each on its own SQLite file
/// (`<data dir>/<service>.db`) and its own loopback port. Dropping it stops them without
/// waiting; [`EmbeddedParticipants::shutdown`] waits for them to finish.
#[derive(Debug)]
pub struct EmbeddedParticipants {
    addrs: BTreeMap<ServiceKind, SocketAddr>,
    shutdown: CancellationToken,
    servers: Vec<Running>,
}

/// One embedded service's server task and database.
#[derive(Debug)]
struct Running {
    service: ServiceKind,
    backend: Backend,
    task: JoinHandle<Result<(), ServeError>>,
}

impl EmbeddedParticipants {
    /// Starts `services` with default [`ServeOptions`] (wall clock, 30-minute reservations,
    /// no faults); see [`EmbeddedParticipants::start_with`].
    pub async fn start(
        data_dir: impl AsRef<Path>,
        services: &[ServiceKind],
        seed_demo_catalog: bool,
    ) -> Result<Self, ServeError> {
        Self::start_with(data_dir, services, seed_demo_catalog, |_| {}).await
    }

    /// Creates `data_dir` if needed, then for each service opens (creating if missing) and
    /// migrates `<data_dir>/<service>.db`, seeds the demo catalog into the inventory's if
    /// asked, binds `127.0.0.1:0` and starts serving it (with its own Chaos service, health
    /// and reflection). Returns once every service is listening: calls may start at once.
    /// `configure` adjusts each service's [`ServeOptions`] (its `services` is that one).
    pub async fn start_with(
        data_dir: impl AsRef<Path>,
        services: &[ServiceKind],
        seed_demo_catalog: bool,
        configure: impl Fn(&mut ServeOptions),
    ) -> Result<Self, ServeError> {
        let data_dir = data_dir.as_ref();
        std::fs::create_dir_all(data_dir)
            .map_err(|source| ServeError::DataDir { path: data_dir.to_path_buf(), source })?;
        let mut started =
            EmbeddedParticipants { addrs: BTreeMap::new(), shutdown: CancellationToken::new(), servers: Vec::new() };
        let mut services = services.to_vec();
        services.sort();
        services.dedup();
        for service in services {
            let mut options = ServeOptions::new(vec![service]);
            configure(&mut options);
            options.services = vec![service];
            let backend =
                Backend::open_sqlite_file(&Self::database_file(data_dir, service), DEFAULT_MAX_CONNECTIONS).await?;
            // On an error, `started` is dropped: the services already started stop.
            // Only the inventory has a catalog to seed.
            let seed = seed_demo_catalog && service == ServiceKind::Inventory;
            if let Err(err) = prepare(&backend, &[service], seed, options.clock.clone()).await {
                backend.close().await;
                return Err(err);
            }
            let addr = "127.0.0.1:0";
            let listener =
                TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr: addr.to_owned(), source })?;
            let local = listener.local_addr().map_err(|source| ServeError::Bind { addr: addr.to_owned(), source })?;
            let server = tokio::spawn(serve(backend.clone(), options, listener, started.shutdown.child_token()));
            started.addrs.insert(service, local);
            started.servers.push(Running { service, backend, task: server });
        }
        Ok(started)
    }

    /// Where a service's database file lives under `data_dir`: `<data_dir>/<service>.db`.
    pub fn database_file(data_dir: &Path, service: ServiceKind) -> PathBuf {
        data_dir.join(format!("{}.db", service.name()))
    }

    /// The address a service listens on, if it was started.
    pub fn addr(&self, service: ServiceKind) -> Option<SocketAddr> {
        self.addrs.get(&service).copied()
    }

    /// Every started service and its address.
    pub fn addrs(&self) -> &BTreeMap<ServiceKind, SocketAddr> {
        &self.addrs
    }

    /// Stops every service gracefully (in-flight calls finish), closes the databases, and
    /// returns the first error any of them stopped with.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        let mut first_error = None;
        for Running { service, backend, task } in std::mem::take(&mut self.servers) {
            let result = match task.await {
                Ok(result) => result,
                Err(join) => Err(ServeError::Crashed { service: service.name(), detail: join.to_string() }),
            };
            backend.close().await;
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for EmbeddedParticipants {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
