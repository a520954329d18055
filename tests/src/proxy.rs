//! A fault-injecting TCP proxy, put between the orchestrator and a participant by giving
//! `sagaflow serve` the proxy's address as the participant's URL. It forwards bytes both
//! ways and, on command, delays them, holds them (a blackhole: nothing moves until
//! restored, as when packets are lost and TCP keeps retransmitting), or cuts the network
//! (every open connection reset, new ones reset at once), then restores it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward at once.
    Pass,
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// Forward nothing; connections stay open and their bytes wait.
    Blackhole,
    /// Reset connections: the open ones when the cut starts, new ones as they arrive.
    Cut,
}

#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    /// Bumped by every cut: a connection older than the current generation is reset.
    generation: u64,
}

/// Counters of what the proxy saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub resets: AtomicU64,
    pub bytes: AtomicU64,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub name: String,
    addr: SocketAddr,
    pub upstream: SocketAddr,
    state: watch::Sender<State>,
    pub stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub async fn start(name: &str, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State { mode: Mode::Pass, generation: 0 });
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(accept_loop(listener, upstream, state.subscribe(), stats.clone()));
        Ok(FaultProxy { name: name.to_owned(), addr, upstream, state, stats, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// Delay every chunk by `by` from now on.
    pub fn delay(&self, by: Duration) {
        self.state.send_modify(|s| s.mode = Mode::Delay(by));
    }

    /// Stop forwarding; bytes wait until [`restore`](Self::restore).
    pub fn blackhole(&self) {
        self.state.send_modify(|s| s.mode = Mode::Blackhole);
    }

    /// Reset every open connection, and every new one until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Cut;
            s.generation += 1;
        });
    }

    /// Back to forwarding at once.
    pub fn restore(&self) {
        self.state.send_modify(|s| s.mode = Mode::Pass);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: watch::Receiver<State>, stats: Arc<Stats>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(connection(client, upstream, state.clone(), stats.clone()));
    }
}

/// Reset a socket: close it with SO_LINGER 0, so the peer gets RST, not FIN.
fn reset(stream: TcpStream, stats: &Stats) {
    let _ = stream.set_zero_linger();
    stats.resets.fetch_add(1, Ordering::Relaxed);
    drop(stream);
}

/// Wait until the mode lets bytes move; `false` if the connection must be reset.
async fn passable(state: &mut watch::Receiver<State>, generation: u64) -> bool {
    loop {
        let now = *state.borrow_and_update();
        if now.generation != generation || now.mode == Mode::Cut {
            return false;
        }
        if now.mode != Mode::Blackhole {
            return true;
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>, stats: Arc<Stats>) {
    let generation = state.borrow().generation;
    // A blackhole holds a new connection too: accepted, but nothing reaches the upstream.
    if !passable(&mut state, generation).await {
        reset(client, &stats);
        return;
    }
    let mut server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        // The participant is down: the caller sees the connection reset, as it would see a
        // refused one without the proxy.
        Err(_) => {
            reset(client, &stats);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let was_cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, state.clone(), generation, &stats);
        let down = pump(server_read, client_write, state.clone(), generation, &stats);
        let (up, down) = tokio::join!(up, down);
        up || down
    };
    if was_cut {
        reset(client, &stats);
        reset(server, &stats);
    }
}

/// Copy one direction until EOF (then half-close the other side) or a cut (`true`).
async fn pump<R, W>(mut from: R, mut to: W, mut state: watch::Receiver<State>, generation: u64, stats: &Stats) -> bool
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !passable(&mut state, generation).await {
            return true;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return false;
                }
                Ok(n) => n,
            },
            cut = wait_cut(&mut state, generation) => {
                if cut {
                    return true;
                }
                continue;
            }
        };
        let delay = match state.borrow().mode {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Held here while a blackhole lasts; dropped with the connection on a cut.
        if !passable(&mut state, generation).await {
            return true;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
        stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Resolves `true` when a cut hits this connection, `false` on any other change of mode
/// (so the caller re-checks it).
async fn wait_cut(state: &mut watch::Receiver<State>, generation: u64) -> bool {
    if state.changed().await.is_err() {
        return true;
    }
    let now = *state.borrow_and_update();
    now.generation != generation || now.mode == Mode::Cut
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on loopback: answers every chunk with itself.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(text).await?;
        let mut buf = vec![0u8; text.len()];
        s.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn forwards_holds_cuts_and_restores() {
        let proxy = FaultProxy::start("echo", echo().await).await.expect("proxy");
        let mut s = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut s, b"hello").await.expect("echo"), b"hello");

        // A blackhole holds the bytes; restoring lets them through on the same connection.
        proxy.blackhole();
        s.write_all(b"held").await.expect("write");
        let mut buf = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_millis(200), s.read_exact(&mut buf)).await;
        assert!(early.is_err(), "nothing passes a blackhole");
        proxy.restore();
        s.read_exact(&mut buf).await.expect("delivered after restore");
        assert_eq!(&buf, b"held");

        // A cut resets the open connection and refuses new ones until restored.
        proxy.cut();
        let read = s.read(&mut buf).await;
        assert!(matches!(read, Ok(0) | Err(_)), "the open connection ends: {read:?}");
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("accepted, then reset");
        assert!(round_trip(&mut refused, b"x").await.is_err(), "a new connection is reset during a cut");
        proxy.restore();
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(round_trip(&mut fresh, b"again").await.expect("echo"), b"again");
        assert!(proxy.stats.resets.load(Ordering::Relaxed) >= 3);

        // A delay still delivers, in order.
        proxy.delay(Duration::from_millis(20));
        assert_eq!(round_trip(&mut fresh, b"slow").await.expect("echo"), b"slow");
    }
}
