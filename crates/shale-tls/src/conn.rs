//! [`MaybeTls`]: one accepted connection, plain or TLS, and the [`ConnInfo`] tonic attaches
//! to each of its requests.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a request knows about its connection (in the request's extensions).
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The Common Name of the client certificate, set only when the certificate was
    /// verified against the trusted CA (`--client-cert-auth`). Shared: tonic copies the
    /// connection's info into every request, and the auth layer keeps it per request.
    pub common_name: Option<std::sync::Arc<str>>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// A served connection: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum MaybeTls {
    Plain(TcpStream, ConnInfo),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, ConnInfo),
}

impl MaybeTls {
    pub fn info(&self) -> &ConnInfo {
        match self {
            MaybeTls::Plain(_, i) | MaybeTls::Tls(_, i) => i,
        }
    }
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s, _) => s.is_write_vectored(),
            MaybeTls::Tls(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s, _) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for MaybeTls {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info().clone()
    }
}
