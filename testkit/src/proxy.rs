//! A TCP proxy that injects faults: forward, cut after N bytes, stall, reset.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::KitError;

/// What the proxy does with traffic. A change applies to new and open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward bytes both ways.
    Forward,
    /// Forward this many more bytes per connection (both directions counted), then
    /// close both sides.
    CutAfter(u64),
    /// Keep connections open but forward nothing (a hung network).
    Stall,
    /// Answer with a TCP reset: new connections are reset right after accept, open
    /// ones at their next byte.
    Reset,
}

/// Counters of what the proxy saw.
#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    bytes: AtomicU64,
}

/// A fault-injecting TCP proxy on `127.0.0.1`, in front of one target. It runs on its
/// own thread and runtime and stops on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<FaultMode>,
    stats: Arc<Stats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Start a proxy to `target` in `Forward` mode.
    pub fn start(target: SocketAddr) -> Result<Self, KitError> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (mode_tx, mode_rx) = watch::channel(FaultMode::Forward);
        let stats = Arc::new(Stats::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new().name("rpcc-fault-proxy".into()).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else { return };
                tokio::select! {
                    _ = accept_loop(listener, target, mode_rx, thread_stats) => {}
                    _ = stop_rx => {}
                }
            });
            // Dropping the runtime here cancels every connection task.
        })?;
        Ok(Self { addr, mode: mode_tx, stats, shutdown: Some(stop_tx), thread: Some(thread) })
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switch the fault mode.
    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    /// How many connections were accepted.
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }

    /// How many bytes were forwarded, both directions.
    pub fn bytes_forwarded(&self) -> u64 {
        self.stats.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<FaultMode>, stats: Arc<Stats>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let current = *mode.borrow();
        if current == FaultMode::Reset {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        tokio::spawn(connection(client, target, mode.clone(), Arc::clone(&stats)));
    }
}

/// Forward one connection under the current fault mode.
async fn connection(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<FaultMode>, stats: Arc<Stats>) {
    let Ok(server) = TcpStream::connect(target).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut budget_used: u64 = 0;
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    let mut cut_base: Option<u64> = None;
    loop {
        let current = *mode.borrow_and_update();
        match current {
            FaultMode::Stall => {
                // Hold everything until the mode changes (or the proxy stops).
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            FaultMode::Reset => {
                reset(cw.reunite(cr), sw.reunite(sr));
                return;
            }
            FaultMode::CutAfter(n) => {
                let base = *cut_base.get_or_insert(budget_used);
                if budget_used - base >= n {
                    return; // dropping both halves closes both sockets
                }
            }
            FaultMode::Forward => cut_base = None,
        }
        let limit = match current {
            FaultMode::CutAfter(n) => {
                let used = budget_used - cut_base.unwrap_or(budget_used);
                usize::try_from(n - used).unwrap_or(usize::MAX).min(cbuf.len())
            }
            _ => cbuf.len(),
        };
        tokio::select! {
            r = cr.read(&mut cbuf[..limit]) => match r {
                Ok(0) | Err(_) => { let _ = sw.shutdown().await; return; }
                Ok(k) => {
                    if sw.write_all(&cbuf[..k]).await.is_err() { return; }
                    budget_used += k as u64;
                    stats.bytes.fetch_add(k as u64, Ordering::Relaxed);
                }
            },
            r = sr.read(&mut sbuf[..limit]) => match r {
                Ok(0) | Err(_) => { let _ = cw.shutdown().await; return; }
                Ok(k) => {
                    if cw.write_all(&sbuf[..k]).await.is_err() { return; }
                    budget_used += k as u64;
                    stats.bytes.fetch_add(k as u64, Ordering::Relaxed);
                }
            },
            changed = mode.changed() => if changed.is_err() { return; },
        }
    }
}

fn reset(
    client: Result<TcpStream, tokio::net::tcp::ReuniteError>,
    server: Result<TcpStream, tokio::net::tcp::ReuniteError>,
) {
    for s in [client, server].into_iter().flatten() {
        let _ = s.set_zero_linger();
    }
}
