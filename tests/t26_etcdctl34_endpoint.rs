//! etcdctl 3.4's `endpoint status` / `endpoint hashkv` send the HTTP/2 `:authority`
//! `http://127.0.0.1:PORT` (grpc-go dialing `passthrough:///http://...`), which h2 rejects;
//! `shale_server::h2_authority` repairs it. These tests run the real etcdctl 3.4 against the
//! Shale binary, and drive a raw HTTP/2 connection whose HPACK dynamic tables diverge on the
//! rewritten entry (the client evicts an entry the server keeps) to check that later indexed
//! references still resolve to the same fields on both sides.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use shale_testkit::process::{etcdctl34_bin, http_get, shale_bin, EtcdProcess};

fn start() -> EtcdProcess {
    EtcdProcess::start(&shale_bin().expect("shale binary"), &[]).expect("start shale")
}

fn etcdctl34(server: &EtcdProcess, args: &[&str]) -> String {
    let out = Command::new(etcdctl34_bin().expect("etcdctl 3.4"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint()))
        .args(["--dial-timeout=5s", "--command-timeout=15s"])
        .args(args)
        .output()
        .expect("run etcdctl 3.4");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "etcdctl 3.4 {args:?} failed:\n{stdout}\n{}\n--- server log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail(40)
    );
    stdout
}

#[test]
fn etcdctl34_endpoint_status_and_hashkv() {
    let s = start();
    let ep = s.endpoint();
    etcdctl34(&s, &["put", "/t26/a", "1"]);

    let status = etcdctl34(&s, &["endpoint", "status", "-w", "json"]);
    assert!(
        status.contains(&format!("\"Endpoint\":\"{ep}\"")),
        "{status}"
    );
    assert!(status.contains("\"version\":\"3."), "{status}");
    assert!(status.contains("\"revision\":2"), "{status}");

    let hashkv = etcdctl34(&s, &["endpoint", "hashkv", "-w", "json"]);
    assert!(
        hashkv.contains(&format!("\"Endpoint\":\"{ep}\"")),
        "{hashkv}"
    );
    assert!(hashkv.contains("\"hash\":"), "{hashkv}");
    assert!(hashkv.contains("\"revision\":2"), "{hashkv}");

    let simple = etcdctl34(&s, &["endpoint", "status", "--cluster"]);
    assert!(simple.starts_with(&format!("{ep}, ")), "{simple}");

    // HTTP/1.1 on the same port is untouched.
    let (code, body) = http_get(
        SocketAddr::from(([127, 0, 0, 1], s.client_port())),
        "/health",
    )
    .expect("GET /health");
    assert_eq!(code, 200, "{body}");
}

// ---------------------------------------------------------------- raw HTTP/2

fn frame(ty: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&sid.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK integer with a `prefix`-bit prefix and `flags` above it (RFC 7541 §5.1).
fn int(b: &mut Vec<u8>, mut v: usize, prefix: u32, flags: u8) {
    let max = (1usize << prefix) - 1;
    if v < max {
        b.push(flags | v as u8);
        return;
    }
    b.push(flags | max as u8);
    v -= max;
    while v >= 0x80 {
        b.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Plain (non-Huffman) HPACK string.
fn string(b: &mut Vec<u8>, s: &str) {
    int(b, s.len(), 7, 0);
    b.extend_from_slice(s.as_bytes());
}

/// Dynamic table entry size (RFC 7541 §4.1).
fn entry(name: &str, value: &str) -> usize {
    32 + name.len() + value.len()
}

#[test]
fn raw_h2_url_authority_with_diverging_dynamic_tables() {
    let s = start();
    let url = s.endpoint(); // http://127.0.0.1:PORT, rewritten to 127.0.0.1:PORT
    let path = "/etcdserverpb.Maintenance/Status";
    let ct = ("content-type", "application/grpc");

    // Request 1 (stream 1): table size P + A - 1, where P is the :path entry and A the
    // client's :authority entry. Adding A, the client must evict :path; the server's entry is
    // 7 bytes smaller, so it keeps :path. Adding content-type, the server evicts :path too.
    // Either way the newest entries are [content-type, :authority] on both sides.
    let p = entry(":path", path);
    let a = entry(":authority", &url);
    let max = p + a - 1;
    assert!(a + entry(ct.0, ct.1) <= max);
    let mut req1 = Vec::new();
    int(&mut req1, max, 5, 0x20); // dynamic table size update
    req1.extend([0x83, 0x86]); // :method POST, :scheme http
    int(&mut req1, 4, 6, 0x40); // :path, incremental indexing
    string(&mut req1, path);
    int(&mut req1, 1, 6, 0x40); // :authority, incremental indexing
    string(&mut req1, &url);
    req1.push(0x40); // literal name, incremental indexing
    string(&mut req1, ct.0);
    string(&mut req1, ct.1);

    // Request 2 (stream 3): :authority and content-type by dynamic index, :path literal.
    let mut req2 = vec![0x83, 0x86];
    int(&mut req2, 4, 4, 0x00); // :path, without indexing
    string(&mut req2, path);
    req2.push(0x80 | 63); // :authority (second newest)
    req2.push(0x80 | 62); // content-type (newest)

    let empty_msg = [0u8, 0, 0, 0, 0]; // gRPC frame of an empty StatusRequest
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out.extend(frame(0x1, 0x4, 1, &req1));
    out.extend(frame(0x0, 0x1, 1, &empty_msg));
    out.extend(frame(0x1, 0x4, 3, &req2));
    out.extend(frame(0x0, 0x1, 3, &empty_msg));

    let mut conn = TcpStream::connect(("127.0.0.1", s.client_port())).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    conn.write_all(&out).expect("write");

    // Read frames until both streams are closed by trailers.
    let mut data = [Vec::new(), Vec::new()];
    let mut done = [false, false];
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(done[0] && done[1]) {
        assert!(
            Instant::now() < deadline,
            "timed out; data {data:?} done {done:?}"
        );
        let mut chunk = [0u8; 16384];
        match conn.read(&mut chunk) {
            Ok(0) => panic!("connection closed; data {data:?} done {done:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => panic!("read: {e}"),
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (ty, flags) = (buf[3], buf[4]);
            let sid = u32::from_be_bytes([buf[5] & 0x7f, buf[6], buf[7], buf[8]]);
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let idx = match sid {
                1 => Some(0),
                3 => Some(1),
                _ => None,
            };
            match (ty, idx) {
                (0x4, _) if flags & 0x1 == 0 => conn
                    .write_all(&frame(0x4, 0x1, 0, &[]))
                    .expect("settings ack"),
                (0x3, _) => panic!("RST_STREAM on stream {sid}: {payload:?}"),
                (0x7, _) => panic!("GOAWAY: {payload:?}"),
                (0x0, Some(i)) => data[i].extend_from_slice(&payload),
                (0x1, Some(i)) if flags & 0x1 != 0 => done[i] = true,
                _ => {}
            }
        }
    }
    // Each stream answered with a StatusResponse (it carries the version string "3.x.y");
    // a misrouted or rejected request would end with trailers only.
    for (i, d) in data.iter().enumerate() {
        assert!(
            d.len() > 5 && d.windows(2).any(|w| w == b"3."),
            "stream {}: no StatusResponse: {d:?}",
            2 * i + 1
        );
    }
}
