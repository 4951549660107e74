//! [`incoming`]: the connections of one listener, plain or TLS, for tonic to serve.
//!
//! A task accepts TCP connections and, for a TLS listener, runs each handshake in a task of
//! its own with a deadline ([`HANDSHAKE_TIMEOUT`]), so a client that stalls or sends garbage
//! delays no one. Failed handshakes (a plaintext client on a TLS port, a certificate of the
//! wrong CA, an expired or revoked one, a CN that is not allowed) are logged with the
//! client's address and the connection is closed; the listener goes on. The task ends when
//! the stream is dropped (the server stopped).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{ConnInfo, MaybeTls};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The accepted connections of `listener` (TLS with `tls`, plain without).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> impl Stream<Item = std::io::Result<MaybeTls>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, tx));
    ReceiverStream::new(rx)
}

type Tx = mpsc::Sender<std::io::Result<MaybeTls>>;

async fn accept_loop(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, tx: Tx) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (sock, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly, keep listening.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        match &acceptor {
            None => {
                let info = ConnInfo {
                    remote_addr: Some(addr),
                    ..Default::default()
                };
                if tx.send(Ok(MaybeTls::Plain(sock, info))).await.is_err() {
                    return;
                }
            }
            Some(acc) => {
                tokio::spawn(handshake(acc.clone(), sock, addr, tx.clone()));
            }
        }
    }
}

/// How long a refused client is given to read the alert before its socket is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Why a handshake did not produce a connection.
enum Refused {
    /// The client closed before sending a byte (a port probe): not worth a warning.
    Silent,
    /// A failed handshake; the socket, to close gracefully.
    Failed(std::io::Error, TcpStream),
}

async fn handshake(acc: tokio_rustls::TlsAcceptor, sock: TcpStream, addr: SocketAddr, tx: Tx) {
    let attempt = async {
        // A first byte that is not a TLS handshake record (content type 22) is a plaintext
        // client (an HTTP/1 request, the HTTP/2 preface) or garbage: refused without an
        // alert, as Go's TLS stack (etcd) does, so a plaintext client sees its connection
        // closed rather than alert bytes it would take for a response.
        let mut first = [0u8; 1];
        match sock.peek(&mut first).await {
            Ok(0) => return Err(Refused::Silent),
            Ok(_) if first[0] != 22 => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "first record does not look like a TLS handshake",
                );
                return Err(Refused::Failed(e, sock));
            }
            Ok(_) => {}
            Err(e) => return Err(Refused::Failed(e, sock)),
        }
        acc.accept(sock)
            .into_fallible()
            .await
            .map_err(|(e, sock)| Refused::Failed(e, sock))
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Ok(Ok(s)) => s,
        Ok(Err(Refused::Silent)) => {
            tracing::debug!(remote_addr = %addr, "connection closed before a TLS handshake");
            return;
        }
        Ok(Err(Refused::Failed(e, sock))) => {
            tracing::warn!(remote_addr = %addr, error = %e, "rejected connection: TLS handshake failed");
            linger(sock).await;
            return;
        }
        Err(_) => {
            tracing::warn!(remote_addr = %addr, "rejected connection: TLS handshake timed out");
            return;
        }
    };
    let common_name = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::pem::common_name(c))
        .map(std::sync::Arc::<str>::from);
    let info = ConnInfo {
        remote_addr: Some(addr),
        common_name,
        tls: true,
    };
    let _ = tx.send(Ok(MaybeTls::Tls(Box::new(stream), info))).await;
}

/// Closes a refused connection gracefully: FIN after the alert already written, then what
/// the client still sends is read and dropped until it closes (at most [`LINGER`]). Closing
/// with unread bytes would send a TCP reset instead, and a client that sent its first
/// request right after its part of a TLS 1.3 handshake (as curl does) would see "connection
/// reset" and lose the alert that says why it was refused.
async fn linger(mut sock: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = sock.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}
