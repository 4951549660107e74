//! `shale healthcheck [URL]`: the container health probe.
//!
//! A `FROM scratch` image has no shell and no curl, so the health check Docker runs inside
//! the container is the `shale` binary itself. The probe sends one HTTP/1.0 `GET` to the
//! member's `/health` endpoint (etcd's: a leader, no alarm, a linearizable read within a
//! second) and succeeds only on `200` with `"health":"true"`. It uses the standard library
//! alone: no runtime, no logging, nothing written anywhere.
//!
//! The URL defaults to `http://127.0.0.1:2379/health`; a URL without a path gets `/health`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The address probed when no URL is given: the member's own default client port.
pub const DEFAULT_HEALTH_URL: &str = "http://127.0.0.1:2379/health";

/// What the probe found, as a one-line reason on failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("bad health URL {0:?}: expected http://host:port[/path]")]
    BadUrl(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

/// `(host:port, path)` of an `http://` URL.
fn split_url(url: &str) -> Result<(String, String), ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(bad());
    }
    let path = if path.is_empty() || path == "/" {
        "/health"
    } else {
        path
    };
    Ok((authority.to_string(), path.to_string()))
}

/// Judge a raw HTTP response: `200` and a body saying `"health":"true"`.
fn judge(response: &str) -> Result<(), ProbeError> {
    let status_line = response.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    if status == "200" && body.contains(r#""health":"true""#) {
        Ok(())
    } else if body.is_empty() {
        Err(ProbeError::Unhealthy(status_line.to_string()))
    } else {
        Err(ProbeError::Unhealthy(format!("{status} {body}")))
    }
}

/// Probe `url` once, within `timeout` for connecting and for the answer each.
pub fn check(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let (authority, path) = split_url(url)?;
    let unreachable = |e: std::io::Error| ProbeError::Unreachable(format!("{authority}: {e}"));
    let addr = authority
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| ProbeError::Unreachable(format!("{authority}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(unreachable)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(unreachable)?;
    judge(&String::from_utf8_lossy(&response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:2379").unwrap(),
            ("127.0.0.1:2379".into(), "/health".into())
        );
        assert_eq!(
            split_url("http://shale-1:2379/readyz").unwrap(),
            ("shale-1:2379".into(), "/readyz".into())
        );
        assert!(matches!(
            split_url("https://a:1"),
            Err(ProbeError::BadUrl(_))
        ));
        assert!(matches!(
            split_url("http://nohost"),
            Err(ProbeError::BadUrl(_))
        ));
    }

    #[test]
    fn verdicts() {
        let ok = "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"health\":\"true\",\"reason\":\"\"}";
        assert_eq!(judge(ok), Ok(()));
        let down = "HTTP/1.0 503 Service Unavailable\r\n\r\n{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}";
        assert_eq!(
            judge(down),
            Err(ProbeError::Unhealthy(
                "503 {\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}".into()
            ))
        );
        assert!(judge("").is_err());
    }

    #[test]
    fn nothing_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let e = check(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, ProbeError::Unreachable(_)), "{e}");
    }
}
