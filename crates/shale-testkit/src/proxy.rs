//! [`LinkProxy`]: a one-target TCP proxy on loopback whose link can be cut, blackholed,
//! delayed and healed, to inject network partitions between cluster members.
//!
//! Model: the proxy listens on `127.0.0.1:0` and forwards every accepted connection to one
//! fixed `target`. It is always in one [`LinkMode`]:
//!
//! * `Open` — bytes flow both ways (after an optional per-chunk [`LinkProxy::delay`]);
//! * `Blackhole` — nothing is forwarded and nothing is closed: forwarding threads stop at the
//!   gate while holding the chunk they read (so TCP back-pressure builds up as with a real
//!   packet-dropping link), and new connections are accepted but not connected upstream until
//!   the link heals. Nothing is ever discarded, so a connection that survives a blackhole (no
//!   keepalive timeout on either side) resumes intact, like TCP after retransmission;
//! * `Cut` — every open connection is shut down in both directions, and new connections are
//!   accepted and closed at once (the client sees EOF right after connecting).
//!
//! [`LinkProxy::heal`] returns to `Open`: stalled connections resume, new ones forward; a
//! client whose connection was cut must reconnect. Everything runs on plain threads owned by
//! the proxy (one accept thread, two per connection), so it works from sync and async tests
//! alike. Dropping the proxy cuts everything, stops and joins every thread and closes the
//! listener, freeing the port.
//!
//! Invariants: a byte is counted in [`LinkProxy::bytes_forwarded`] only once it was written to
//! the other side; in `Cut` no connection stays open; the mode only changes through the
//! methods (all take `&self`, so one proxy can be shared by reference between threads).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CHUNK: usize = 64 * 1024;

/// What the link does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Open,
    Blackhole,
    Cut,
}

#[derive(Debug)]
struct Ctl {
    mode: LinkMode,
    delay: Duration,
}

/// The two sockets of one proxied connection (clones used to shut them down).
struct Conn {
    client: TcpStream,
    upstream: Option<TcpStream>,
}

struct Shared {
    target: SocketAddr,
    ctl: Mutex<Ctl>,
    changed: Condvar,
    stop: AtomicBool,
    to_target: AtomicU64,
    from_target: AtomicU64,
    accepted: AtomicU64,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Conn>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Wait while blackholed; the delay to apply if the link is open, `None` if cut/stopping.
    fn gate(&self) -> Option<Duration> {
        let mut ctl = lock(&self.ctl);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            match ctl.mode {
                LinkMode::Open => return Some(ctl.delay),
                LinkMode::Cut => return None,
                LinkMode::Blackhole => {
                    ctl = self
                        .changed
                        .wait(ctl)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    fn shutdown_all(&self) {
        for c in lock(&self.conns).values() {
            let _ = c.client.shutdown(Shutdown::Both);
            if let Some(u) = &c.upstream {
                let _ = u.shutdown(Shutdown::Both);
            }
        }
    }

    fn spawn(self: &Arc<Self>, f: impl FnOnce() + Send + 'static) {
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        if let Ok(t) = std::thread::Builder::new()
            .name("link-proxy".into())
            .spawn(f)
        {
            threads.push(t);
        }
    }

    /// One accepted connection: wait for the link, connect upstream, pump both ways.
    fn serve(self: Arc<Self>, id: u64, client: TcpStream) {
        let done = |s: &Self| {
            if let Some(c) = lock(&s.conns).remove(&id) {
                let _ = c.client.shutdown(Shutdown::Both);
                if let Some(u) = c.upstream {
                    let _ = u.shutdown(Shutdown::Both);
                }
            }
        };
        if self.gate().is_none() {
            return done(&self);
        }
        let Ok(upstream) = TcpStream::connect_timeout(&self.target, CONNECT_TIMEOUT) else {
            return done(&self);
        };
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        let clones = (
            client.try_clone(),
            upstream.try_clone(),
            upstream.try_clone(),
        );
        let (Ok(client_r), Ok(upstream_w), Ok(upstream_reg)) = clones else {
            return done(&self);
        };
        {
            let mut conns = lock(&self.conns);
            match conns.get_mut(&id) {
                // cut or dropped meanwhile
                None => return,
                Some(c) => c.upstream = Some(upstream_reg),
            }
        }
        if lock(&self.ctl).mode == LinkMode::Cut || self.stop.load(Ordering::SeqCst) {
            return done(&self);
        }
        let me = Arc::clone(&self);
        self.spawn(move || {
            me.pump(client_r, upstream_w, true);
        });
        self.pump(upstream, client, false);
        done(&self);
    }

    /// Copy `src` to `dst` through the gate until EOF, an error, a cut or a stop.
    fn pump(&self, mut src: TcpStream, mut dst: TcpStream, up: bool) {
        let mut buf = vec![0u8; CHUNK];
        let counter = if up {
            &self.to_target
        } else {
            &self.from_target
        };
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = dst.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => n,
            };
            let Some(delay) = self.gate() else {
                let _ = src.shutdown(Shutdown::Both);
                let _ = dst.shutdown(Shutdown::Both);
                return;
            };
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            if dst.write_all(&buf[..n]).is_err() {
                let _ = src.shutdown(Shutdown::Both);
                return;
            }
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
    }
}

/// A TCP proxy for one directed link `client -> target` (see the module docs).
pub struct LinkProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl LinkProxy {
    /// Listen on `127.0.0.1:0` and forward connections to `target` (which need not be up yet:
    /// the upstream connection is made per accepted connection).
    pub fn start(target: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            ctl: Mutex::new(Ctl {
                mode: LinkMode::Open,
                delay: Duration::ZERO,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            to_target: AtomicU64::new(0),
            from_target: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("link-proxy-{addr}"))
            .spawn(move || accept_loop(s, listener))?;
        Ok(Self {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// Where clients connect (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    pub fn mode(&self) -> LinkMode {
        lock(&self.shared.ctl).mode
    }

    fn set_mode(&self, mode: LinkMode) {
        lock(&self.shared.ctl).mode = mode;
        self.shared.changed.notify_all();
        if mode == LinkMode::Cut {
            self.shared.shutdown_all();
        }
    }

    /// Close every connection (both ways) and close new ones right after accepting them.
    pub fn cut(&self) {
        self.set_mode(LinkMode::Cut);
    }

    /// Stop forwarding without closing anything; new connections are held, not forwarded.
    pub fn blackhole(&self) {
        self.set_mode(LinkMode::Blackhole);
    }

    /// Forward again: held connections resume, new connections are forwarded.
    pub fn heal(&self) {
        self.set_mode(LinkMode::Open);
    }

    /// Hold every forwarded chunk for `delay` before writing it (zero: no delay). Latency is
    /// per chunk and per direction, so throughput drops too; meant for small RPC traffic.
    pub fn delay(&self, delay: Duration) {
        lock(&self.shared.ctl).delay = delay;
    }

    /// Bytes written so far (client -> target, target -> client).
    pub fn bytes_forwarded(&self) -> (u64, u64) {
        (
            self.shared.to_target.load(Ordering::SeqCst),
            self.shared.from_target.load(Ordering::SeqCst),
        )
    }

    /// Connections accepted so far (including those closed at once while cut).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open (accepted and not yet closed).
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = stream else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if lock(&shared.ctl).mode == LinkMode::Cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(reg) = client.try_clone() else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        lock(&shared.conns).insert(
            id,
            Conn {
                client: reg,
                upstream: None,
            },
        );
        let s = Arc::clone(&shared);
        shared.spawn(move || s.serve(id, client));
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_mode(LinkMode::Cut);
        // wake the accept loop
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // a connection thread may still spawn its second pump: join until none is left
        loop {
            self.shared.shutdown_all();
            let threads = std::mem::take(&mut *lock(&self.shared.threads));
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Debug for LinkProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("mode", &self.mode())
            .field("bytes", &self.bytes_forwarded())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on loopback; runs until the test process ends.
    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn connect(p: &LinkProxy) -> TcpStream {
        let s = TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn echo(s: &mut TcpStream, msg: &[u8]) {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }

    /// The connection is closed: a read ends (EOF or reset) instead of timing out.
    fn assert_closed(s: &mut TcpStream) {
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("read {n} bytes from a cut link"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ),
                "connection still open: {e}"
            ),
        }
    }

    #[test]
    fn forwards_cuts_and_heals() {
        let p = LinkProxy::start(echo_server()).unwrap();
        let mut a = connect(&p);
        echo(&mut a, b"hello");
        wait_until("counters", || p.bytes_forwarded() == (5, 5));

        p.cut();
        assert_eq!(p.mode(), LinkMode::Cut);
        assert_closed(&mut a);
        let mut b = connect(&p); // accepted, then closed
        let _ = b.write_all(b"x");
        assert_closed(&mut b);
        wait_until("no open connections", || p.open_connections() == 0);

        p.heal();
        let mut c = connect(&p);
        echo(&mut c, b"again");
        assert_eq!(p.connections_accepted(), 3);
        wait_until("counters", || p.bytes_forwarded() == (10, 10));
    }

    #[test]
    fn blackhole_holds_then_resumes() {
        let p = LinkProxy::start(echo_server()).unwrap();
        let mut a = connect(&p);
        echo(&mut a, b"one");
        p.blackhole();
        a.write_all(b"two").unwrap();
        let mut fresh = connect(&p);
        fresh.write_all(b"new").unwrap();
        // nothing comes back while blackholed (a short negative check; it can only miss a bug)
        a.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 3];
        assert!(a.read(&mut buf).is_err(), "data crossed a blackholed link");
        assert_eq!(p.bytes_forwarded(), (3, 3));
        p.heal();
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"two");
        fresh.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"new");
        echo(&mut fresh, b"more");
    }

    #[test]
    fn delay_adds_latency() {
        let p = LinkProxy::start(echo_server()).unwrap();
        let mut a = connect(&p);
        p.delay(Duration::from_millis(30));
        let t = Instant::now();
        echo(&mut a, b"slow");
        // a lower bound only: each direction sleeps at least the delay
        assert!(t.elapsed() >= Duration::from_millis(60));
        p.delay(Duration::ZERO);
        echo(&mut a, b"fast");
    }

    #[test]
    fn target_down_closes_client_and_drop_frees_port() {
        let dead = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let p = LinkProxy::start(dead_addr).unwrap();
        let mut a = connect(&p);
        assert_closed(&mut a);

        let p = LinkProxy::start(echo_server()).unwrap();
        let addr = p.addr();
        let mut held = connect(&p);
        echo(&mut held, b"x");
        drop(p);
        assert_closed(&mut held);
        TcpListener::bind(addr).expect("port freed by drop");
    }
}
