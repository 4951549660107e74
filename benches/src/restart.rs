//! Restart-to-ready after a crash: kill -9 one member, start it again on the same data dir
//! with the same flags and ports, and time, from the kill,
//!
//! * `listening_s`: until its client port accepts a TCP connection;
//! * `ready_s`: until a *linearizable* Range (`serializable = false`) of a key the load wrote
//!   succeeds and returns that key, which is what `etcdctl get KEY` (no
//!   `--consistency=s`) waits for and what a client of a freshly restarted member needs.
//!
//! Both are polled every [`POLL`] with fresh connections (a refused connect or a failed read is
//! retried until [`ReadyProbe::deadline`]). The member's RSS once it is ready is recorded too:
//! a member that rebuilds its index from the data files pays for it in memory as well as time.
//!
//! Invariant: the probe read must return the probe key; a restart that answers but lost the
//! data is an error, not a fast restart.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;
use shale_api::etcdserverpb::RangeRequest;
use shale_testkit::process::EtcdProcess;

use crate::pool::{ClientPool, Dial};
use crate::sysinfo;

/// Interval between probes.
pub const POLL: Duration = Duration::from_millis(10);

/// One timed restart.
#[derive(Clone, Debug, Serialize)]
pub struct RestartResult {
    /// Seconds from the kill until the client port accepted a connection.
    pub listening_s: f64,
    /// Seconds from the kill until a linearizable read of the probe key succeeded.
    pub ready_s: f64,
    /// RSS of the restarted member when it became ready.
    pub rss_at_ready_mib: Option<f64>,
}

/// What "ready" is checked with.
#[derive(Clone, Debug)]
pub struct ReadyProbe {
    /// A key the load wrote (must come back from the read).
    pub key: Bytes,
    pub dial: Dial,
    /// Give up after this long.
    pub deadline: Duration,
}

/// Kill -9 `member`, start it again and time it (see the module docs).
pub async fn kill_and_time(member: &mut EtcdProcess, probe: &ReadyProbe) -> Result<RestartResult> {
    let endpoint = member.endpoint();
    let addr = SocketAddr::from(([127, 0, 0, 1], member.client_port()));
    let t0 = Instant::now();
    member.kill9().context("kill -9")?;
    member.spawn_again().context("starting again")?;
    let deadline = t0 + probe.deadline;
    let mut listening = None;
    loop {
        if !member.is_running() {
            bail!(
                "{} exited while restarting; log:\n{}",
                member.name(),
                member.log_tail(30)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready {:?} after kill -9 (listening: {listening:?}); log:\n{}",
                member.name(),
                probe.deadline,
                member.log_tail(30)
            );
        }
        if listening.is_none() {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                listening = Some(t0.elapsed().as_secs_f64());
            } else {
                tokio::time::sleep(POLL).await;
                continue;
            }
        }
        if read_once(&endpoint, probe).await? {
            let ready_s = t0.elapsed().as_secs_f64();
            return Ok(RestartResult {
                listening_s: listening.unwrap_or(ready_s),
                ready_s,
                rss_at_ready_mib: member.pid().and_then(|p| sysinfo::status_mib(p, "VmRSS")),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One linearizable read of the probe key: `Ok(true)` when it came back, `Ok(false)` when the
/// member is not serving yet, an error when it serves but the key is gone.
async fn read_once(endpoint: &str, probe: &ReadyProbe) -> Result<bool> {
    let attempt = async {
        let pool = ClientPool::connect(&[endpoint.to_string()], 1, &probe.dial).await?;
        let r = pool
            .kv(0)
            .range(RangeRequest {
                key: probe.key.clone(),
                serializable: false,
                ..Default::default()
            })
            .await?
            .into_inner();
        anyhow::Ok(r.kvs.len())
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(1)) => Ok(true),
        Ok(Ok(n)) => bail!(
            "after the restart a linearizable read of {:?} returned {n} keys, not 1",
            String::from_utf8_lossy(&probe.key)
        ),
        Ok(Err(_)) | Err(_) => Ok(false),
    }
}

/// `p.restarts` timed restarts of the first member of `topo` after an S7 load of `p.objects`
/// pods, then a count-only LIST through the restarted member that must still see them all.
pub async fn s7_cycles(
    topo: &mut crate::topology::Topology,
    dial: &Dial,
    p: &crate::scenario::Params,
) -> Result<Vec<RestartResult>> {
    use crate::objects::{key, Kind};
    let probe = ReadyProbe {
        key: key(Kind::Pod, 0, p.namespaces),
        dial: Dial {
            timeout: Duration::from_secs(1),
            tls: dial.tls.clone(),
        },
        deadline: Duration::from_secs_f64(p.timeout_s),
    };
    let member = topo
        .member_mut(0)
        .context("the topology has no member to restart")?;
    let mut out = Vec::with_capacity(p.restarts);
    for i in 0..p.restarts {
        let r = kill_and_time(member, &probe)
            .await
            .with_context(|| format!("restart {} of {}", i + 1, p.restarts))?;
        eprintln!(
            "restart {}: listening after {:.2} s, linearizable read after {:.2} s",
            i + 1,
            r.listening_s,
            r.ready_s
        );
        out.push(r);
    }
    let pool = ClientPool::connect(&[member.endpoint()], 1, dial).await?;
    let prefix = Kind::Pod.prefix().as_bytes();
    let r = pool
        .kv(0)
        .range(RangeRequest {
            key: Bytes::from_static(Kind::Pod.prefix().as_bytes()),
            range_end: crate::kube::prefix_end(prefix),
            count_only: true,
            ..Default::default()
        })
        .await
        .context("count-only LIST after the restarts")?
        .into_inner();
    if r.count as u64 != p.objects {
        bail!(
            "after the restarts a count-only LIST sees {} objects, not the {} loaded",
            r.count,
            p.objects
        );
    }
    Ok(out)
}
