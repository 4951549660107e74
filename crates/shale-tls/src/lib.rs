//! TLS for Shale's client and peer ports, the way etcd does it (`client/pkg/transport`):
//! certificate and key files named by flags, an optional trusted CA that client (or peer)
//! certificates must chain to, certificate revocation lists, allowed peer CNs and
//! hostnames, TLS 1.2/1.3 bounds and TLS 1.2 cipher suites, and self-signed certificates
//! for `--auto-tls`.
//!
//! The model:
//! - A [`ServerTlsConfig`] (one per port kind: client or peer) is checked once at startup
//!   ([`ServerTlsConfig::build`]); every problem an operator can cause (a missing or non-PEM
//!   file, a key that does not match its certificate, `--client-cert-auth` without a CA) is
//!   a [`TlsError`] naming the flag and the file.
//! - The certificate/key pair is a [`ReloadingKeyPair`]: every new handshake (server side)
//!   or new connection (client side) looks at the two files' metadata, and when they changed
//!   it loads the new pair. A pair that cannot be loaded (half written, key and certificate
//!   from different pairs) is logged and the last good pair stays in use. Existing
//!   connections are never touched: rotation needs no restart and drops nothing.
//! - [`incoming`] turns a bound `TcpListener` into the stream of connections tonic serves:
//!   plain or TLS per listener (etcd lets `http://` and `https://` listen URLs be mixed).
//!   Handshakes run concurrently and are bounded in time, so a client that sends garbage or
//!   stalls mid-handshake never holds up anyone else.
//! - Each served connection carries a [`ConnInfo`] (remote address and, when the client's
//!   certificate was verified, its Common Name), which tonic puts into every request's
//!   extensions; the auth layer uses the CN as the user when a request has no token.
//! - The client side ([`ClientTlsConfig`], [`TlsConnector`]) is what members use to dial
//!   `https://` peers, and what tools (healthcheck, benchmark) use to reach a TLS member.
//!
//! Crypto is rustls with the ring provider (no OpenSSL, so the static binary and the
//! `FROM scratch` image keep working); PEM parsing is rustls-pki-types'; certificate fields
//! are read with x509-parser. Nothing here parses or signs by hand.

mod auto;
mod client;
mod conn;
mod error;
mod incoming;
mod options;
mod pem;
mod reload;
mod server;
mod verify;

pub use auto::self_signed;
pub use client::{client_config, ClientTlsConfig, ClientTlsFiles, TlsConnector};
pub use conn::{ConnInfo, MaybeTls};
pub use error::TlsError;
pub use incoming::{incoming, HANDSHAKE_TIMEOUT};
pub use options::{parse_cipher_suites, TlsVersion};
pub use reload::ReloadingKeyPair;
pub use server::ServerTlsConfig;

pub use rustls;
pub use tokio_rustls;

/// The crypto provider every config here is built with (ring).
// ring, as the static `FROM scratch` build needs (rustls 0.23.48 marks it deprecated only
// because it lacks post-quantum key exchange).
#[allow(deprecated)]
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocols a member's TLS ports offer: gRPC needs `h2` (Go's gRPC client refuses a
/// server that does not negotiate it); `http/1.1` serves `curl https://…/health` and friends.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];
