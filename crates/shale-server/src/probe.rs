//! `shale healthcheck [URL] [--cacert F] [--cert F] [--key F] [--insecure-skip-tls-verify]`:
//! the container health probe.
//!
//! A `FROM scratch` image has no shell and no curl, so the health check Docker runs inside
//! the container is the `shale` binary itself. The probe sends one HTTP/1.0 `GET` to the
//! member's `/health` endpoint (etcd's: a leader, no alarm, a linearizable read within a
//! second) and succeeds only on `200` with `"health":"true"`. It runs no async runtime,
//! logs nothing and writes nothing: a blocking socket, and for `https://` URLs a blocking
//! rustls stream over it (the client configuration comes from `shale_tls`, ALPN
//! `http/1.1` because the request is HTTP/1).
//!
//! The TLS files are named as etcdctl names them: `--cacert`, `--cert`, `--key` and
//! `--insecure-skip-tls-verify` (`--flag value` or `--flag=value`), or the environment
//! variables `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY` and
//! `ETCDCTL_INSECURE_SKIP_TLS_VERIFY`; a flag wins over its variable. The URL (or
//! etcdctl's `--endpoints`, first of the list) defaults to the member's own client port,
//! `http://127.0.0.1:2379/health`, or `https://…` when any TLS setting is given; a URL
//! without a path gets `/health`. Files are only used for `https://` URLs.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shale_tls::rustls;
use shale_tls::ClientTlsFiles;

/// The address probed when no URL and no TLS setting are given.
pub const DEFAULT_HEALTH_URL: &str = "http://127.0.0.1:2379/health";
/// The address probed when no URL but a TLS setting is given.
pub const DEFAULT_TLS_HEALTH_URL: &str = "https://127.0.0.1:2379/health";

/// What the probe found, as a one-line reason on failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("bad health URL {0:?}: expected http://host:port[/path] or https://host:port[/path]")]
    BadUrl(String),
    #[error("{0} (usage: shale healthcheck [URL] [--cacert FILE] [--cert FILE] [--key FILE] [--insecure-skip-tls-verify])")]
    Usage(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

/// One probe: where, and with which TLS files.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub url: String,
    pub tls: ClientTlsFiles,
}

fn truthy(flag: &str, v: &str) -> Result<bool, ProbeError> {
    match v {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ProbeError::Usage(format!(
            "{flag} takes true or false, not {v:?}"
        ))),
    }
}

impl Probe {
    /// The probe asked for by the arguments after `healthcheck` and the environment (`env`
    /// looks a variable up; tests pass their own).
    pub fn from_args(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Probe, ProbeError> {
        let mut url = None;
        let (mut ca, mut cert, mut key, mut insecure) = (None, None, None, None);
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            let Some(flag) = a.strip_prefix("--") else {
                if url.replace(a.clone()).is_some() {
                    return Err(ProbeError::Usage(format!("a second URL {a:?}")));
                }
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "insecure-skip-tls-verify" {
                insecure = Some(truthy(&a, inline.as_deref().unwrap_or(""))?);
                continue;
            }
            let slot = match name {
                "cacert" => &mut ca,
                "cert" => &mut cert,
                "key" => &mut key,
                "endpoints" => &mut url,
                _ => return Err(ProbeError::Usage(format!("unknown flag {a:?}"))),
            };
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| ProbeError::Usage(format!("--{name} needs a value")))?,
            };
            *slot = Some(value);
        }
        let from_env =
            |v: Option<String>, var: &str| v.or_else(|| env(var).filter(|s| !s.is_empty()));
        let insecure = match insecure {
            Some(b) => b,
            None => match env("ETCDCTL_INSECURE_SKIP_TLS_VERIFY") {
                Some(v) => truthy("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", &v)?,
                None => false,
            },
        };
        let tls = ClientTlsFiles {
            ca: from_env(ca, "ETCDCTL_CACERT").map(PathBuf::from),
            cert: from_env(cert, "ETCDCTL_CERT").map(PathBuf::from),
            key: from_env(key, "ETCDCTL_KEY").map(PathBuf::from),
            insecure_skip_verify: insecure,
        };
        let any_tls = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() || insecure;
        let url = match url {
            // etcdctl's --endpoints is a list: the first is probed.
            Some(u) => u.split(',').next().unwrap_or_default().trim().to_string(),
            None if any_tls => DEFAULT_TLS_HEALTH_URL.to_string(),
            None => DEFAULT_HEALTH_URL.to_string(),
        };
        Ok(Probe { url, tls })
    }
}

/// Where a URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// `host:port` as written (brackets kept around an IPv6 address).
    authority: String,
    /// The host alone, as the server's certificate names it.
    host: String,
    port: u16,
    path: String,
}

fn split_url(url: &str) -> Result<Target, ProbeError> {
    let bad = || ProbeError::BadUrl(url.to_string());
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    let path = if path.is_empty() || path == "/" {
        "/health"
    } else {
        path
    };
    Ok(Target {
        tls,
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Judge a raw HTTP response: `200` and a body saying `"health":"true"` (`/health`) or `ok`
/// (`/livez`, `/readyz`).
fn judge(response: &str) -> Result<(), ProbeError> {
    if response.is_empty() {
        return Err(ProbeError::Unhealthy(
            "closed without an answer (a TLS port? use https://)".into(),
        ));
    }
    if !response.starts_with("HTTP/") {
        return Err(ProbeError::Unhealthy(
            "the answer is not HTTP (a TLS port? use https://)".into(),
        ));
    }
    let status_line = response.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    if status == "200" && (body.contains(r#""health":"true""#) || body == "ok") {
        Ok(())
    } else if body.is_empty() {
        Err(ProbeError::Unhealthy(status_line.to_string()))
    } else {
        Err(ProbeError::Unhealthy(format!("{status} {body}")))
    }
}

/// The rustls client configuration for `files`, offering HTTP/1.1 only.
fn tls_config(files: &ClientTlsFiles) -> Result<Arc<rustls::ClientConfig>, ProbeError> {
    let shared = shale_tls::client_config(files).map_err(|e| ProbeError::Tls(e.to_string()))?;
    let mut cfg = (*shared).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Sends `request` and reads the answer (at most 64 KiB) until the server closes.
fn exchange(stream: &mut (impl Read + Write), request: &str) -> std::io::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.take(64 * 1024).read_to_end(&mut response) {
        // A TLS server may close without close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    Ok(response)
}

/// Probe once, within `timeout` for connecting and for the answer each.
pub fn check(probe: &Probe, timeout: Duration) -> Result<(), ProbeError> {
    let t = split_url(&probe.url)?;
    // Refuse bad TLS files before touching the network.
    let tls = if t.tls {
        Some(tls_config(&probe.tls)?)
    } else {
        None
    };
    let authority = &t.authority;
    let unreachable = |e: std::io::Error| ProbeError::Unreachable(format!("{authority}: {e}"));
    let addr = (t.host.as_str(), t.port)
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
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
        t.path
    );
    let response = match tls {
        None => exchange(&mut stream, &request),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| ProbeError::BadUrl(format!("{}: {e}", probe.url)))?;
            let conn = rustls::ClientConnection::new(cfg, name)
                .map_err(|e| ProbeError::Tls(e.to_string()))?;
            exchange(&mut rustls::StreamOwned::new(conn, stream), &request)
        }
    }
    .map_err(unreachable)?;
    judge(&String::from_utf8_lossy(&response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Probe, ProbeError> {
        Probe::from_args(args.iter().map(|a| a.to_string()), env_of(vars))
    }

    #[test]
    fn urls() {
        let t = split_url("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            (
                t.tls,
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            (false, "127.0.0.1:2379", "127.0.0.1", 2379, "/health")
        );
        let t = split_url("https://shale-1:2379/readyz").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.path.as_str()),
            (true, "shale-1", "/readyz")
        );
        let t = split_url("https://[::1]:2379/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.as_str(), t.path.as_str()),
            ("[::1]:2379", "::1", "/health")
        );
        for bad in ["unix://a:1", "http://nohost", "https://:1", "http://a:port"] {
            assert!(
                matches!(split_url(bad), Err(ProbeError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn flags_and_environment() {
        let p = parse(&[], &[]).unwrap();
        assert_eq!(p.url, DEFAULT_HEALTH_URL);
        assert!(p.tls.ca.is_none() && !p.tls.insecure_skip_verify);

        let p = parse(
            &[
                "https://shale-1:2379",
                "--cacert",
                "/pki/ca.crt",
                "--cert=/pki/c.crt",
                "--key",
                "/pki/c.key",
            ],
            &[("ETCDCTL_CACERT", "/env/ca.crt")],
        )
        .unwrap();
        assert_eq!(p.url, "https://shale-1:2379");
        assert_eq!(p.tls.ca, Some(PathBuf::from("/pki/ca.crt")), "a flag wins");
        assert_eq!(p.tls.cert, Some(PathBuf::from("/pki/c.crt")));
        assert_eq!(p.tls.key, Some(PathBuf::from("/pki/c.key")));

        // etcdctl's variables, and https by default once TLS is asked for.
        let p = parse(
            &[],
            &[
                ("ETCDCTL_CACERT", "/env/ca.crt"),
                ("ETCDCTL_CERT", "/env/c.crt"),
                ("ETCDCTL_KEY", "/env/c.key"),
            ],
        )
        .unwrap();
        assert_eq!(p.url, DEFAULT_TLS_HEALTH_URL);
        assert_eq!(p.tls.ca, Some(PathBuf::from("/env/ca.crt")));
        assert_eq!(p.tls.key, Some(PathBuf::from("/env/c.key")));

        let p = parse(&["--insecure-skip-tls-verify"], &[]).unwrap();
        assert!(p.tls.insecure_skip_verify);
        assert_eq!(p.url, DEFAULT_TLS_HEALTH_URL);
        let p = parse(
            &["--insecure-skip-tls-verify=false"],
            &[("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")],
        )
        .unwrap();
        assert!(!p.tls.insecure_skip_verify);
        let p = parse(&[], &[("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true")]).unwrap();
        assert!(p.tls.insecure_skip_verify);

        let p = parse(&["--endpoints=https://a:1,https://b:2"], &[]).unwrap();
        assert_eq!(p.url, "https://a:1");
    }

    #[test]
    fn bad_command_lines() {
        for args in [
            &["--cacert"][..],
            &["--bogus=1"],
            &["http://a:1", "http://b:2"],
            &["--insecure-skip-tls-verify=maybe"],
        ] {
            assert!(
                matches!(parse(args, &[]), Err(ProbeError::Usage(_))),
                "{args:?}"
            );
        }
    }

    #[test]
    fn https_without_a_ca_is_refused_before_dialing() {
        let p = parse(&["https://127.0.0.1:1"], &[]).unwrap();
        let e = check(&p, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ProbeError::Tls(_)), "{e}");
        assert!(e.to_string().contains("--cacert"), "{e}");
        let p = parse(
            &["https://127.0.0.1:1", "--cacert=/nonexistent/ca.crt"],
            &[],
        )
        .unwrap();
        let e = check(&p, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, ProbeError::Tls(_)), "{e}");
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
        assert_eq!(judge("HTTP/1.1 200 OK\r\n\r\nok"), Ok(()));
        assert!(judge("").unwrap_err().to_string().contains("https://"));
        let tls_alert = "\u{15}\u{3}\u{3}\u{0}\u{2}\u{2}\u{46}";
        assert!(judge(tls_alert)
            .unwrap_err()
            .to_string()
            .contains("https://"));
    }

    #[test]
    fn nothing_listening() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = parse(&[&format!("http://127.0.0.1:{port}")], &[]).unwrap();
        let e = check(&p, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, ProbeError::Unreachable(_)), "{e}");
    }
}
