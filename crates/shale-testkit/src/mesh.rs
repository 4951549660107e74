//! [`PartitionedMesh`]: one [`LinkProxy`] per ordered pair of cluster members, to partition a
//! cluster on loopback.
//!
//! Member `i` reaches member `j` only through the proxy `(i -> j)`, which forwards to `j`'s real
//! peer address: each member is started with a dial override (see
//! [`PartitionedMesh::dial_override`], e.g. `n2=127.0.0.1:P,n3=127.0.0.1:Q`) that replaces the
//! addresses it dials, while the advertised peer URLs stay the real ones. Cutting `(i -> j)`
//! stops what `i` sends to `j` *and* the answers on those connections (TCP is bidirectional),
//! but not the connections `j` opened to `i`; cutting both directions partitions the pair.
//!
//! Invariants: the mesh holds exactly `n * (n - 1)` proxies, keyed by (from, to) member name;
//! fault methods only change the links they name; [`PartitionedMesh::heal_all`] opens every
//! link (and removes delays). Dropping the mesh drops every proxy (closing their ports).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::proxy::{LinkMode, LinkProxy};

/// Shale's hidden test flag taking [`PartitionedMesh::dial_override`].
pub const DIAL_OVERRIDE_FLAG: &str = "--experimental-peer-dial-override";

/// How a partition is applied to the links it affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close connections and refuse new ones ([`LinkProxy::cut`]).
    Cut,
    /// Stall everything without closing ([`LinkProxy::blackhole`]).
    Blackhole,
}

/// Proxies between every ordered pair of members.
#[derive(Debug)]
pub struct PartitionedMesh {
    names: Vec<String>,
    links: BTreeMap<(String, String), LinkProxy>,
}

impl PartitionedMesh {
    /// Start the proxies for `members`: (name, real peer address) pairs; the peers need not
    /// be running yet.
    pub fn start(members: &[(&str, SocketAddr)]) -> Result<Self> {
        let mut links = BTreeMap::new();
        for (from, _) in members {
            for (to, target) in members {
                if from == to {
                    continue;
                }
                let p = LinkProxy::start(*target)
                    .with_context(|| format!("starting link proxy {from}->{to}"))?;
                if links
                    .insert((from.to_string(), to.to_string()), p)
                    .is_some()
                {
                    bail!("member name {to} appears twice");
                }
            }
        }
        Ok(Self {
            names: members.iter().map(|(n, _)| n.to_string()).collect(),
            links,
        })
    }

    /// [`PartitionedMesh::start`] for members `n1..nN` with these real peer ports on
    /// 127.0.0.1 (e.g. from [`crate::process::EtcdProcess::peer_port`]).
    pub fn for_peer_ports(peer_ports: &[u16]) -> Result<Self> {
        let members: Vec<(String, SocketAddr)> = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("n{}", i + 1),
                    SocketAddr::from(([127, 0, 0, 1], *p)),
                )
            })
            .collect();
        let refs: Vec<(&str, SocketAddr)> = members.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        Self::start(&refs)
    }

    /// Member names, in the order given.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The proxy `from -> to`. Panics on an unknown pair (a test bug).
    pub fn link(&self, from: &str, to: &str) -> &LinkProxy {
        self.links
            .get(&(from.to_string(), to.to_string()))
            .unwrap_or_else(|| panic!("no link {from}->{to} in mesh {:?}", self.names))
    }

    /// Addresses `from` must dial instead of each other member's peer address.
    pub fn dial_addrs(&self, from: &str) -> Vec<(String, SocketAddr)> {
        self.names
            .iter()
            .filter(|to| to.as_str() != from)
            .map(|to| (to.clone(), self.link(from, to).addr()))
            .collect()
    }

    /// The dial override for `from`: `n2=127.0.0.1:P,n3=127.0.0.1:Q`.
    pub fn dial_override(&self, from: &str) -> String {
        self.dial_addrs(from)
            .iter()
            .map(|(to, a)| format!("{to}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `[DIAL_OVERRIDE_FLAG, dial_override(from)]`, to append to `from`'s command line.
    pub fn dial_args(&self, from: &str) -> Vec<String> {
        vec![DIAL_OVERRIDE_FLAG.to_string(), self.dial_override(from)]
    }

    fn apply(&self, from: &str, to: &str, fault: Fault) {
        let l = self.link(from, to);
        match fault {
            Fault::Cut => l.cut(),
            Fault::Blackhole => l.blackhole(),
        }
    }

    /// Cut both directions between `a` and `b`.
    pub fn cut_pair(&self, a: &str, b: &str) {
        self.partition_with(&[a], &[b], Fault::Cut);
    }

    /// Cut every link to and from `name` (the other members still see each other).
    pub fn isolate(&self, name: &str) {
        self.isolate_with(name, Fault::Cut);
    }

    pub fn isolate_with(&self, name: &str, fault: Fault) {
        let others: Vec<&str> = self
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| *n != name)
            .collect();
        self.partition_with(&[name], &others, fault);
    }

    /// Cut every link between a member of `a` and a member of `b`, both directions; links
    /// inside each group (and to members in neither) are left as they are.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        self.partition_with(a, b, Fault::Cut);
    }

    pub fn partition_with(&self, a: &[&str], b: &[&str], fault: Fault) {
        for x in a {
            for y in b {
                if x != y {
                    self.apply(x, y, fault);
                    self.apply(y, x, fault);
                }
            }
        }
    }

    /// Add latency to every link out of `from` (zero removes it).
    pub fn delay_from(&self, from: &str, delay: Duration) {
        for ((f, _), l) in &self.links {
            if f == from {
                l.delay(delay);
            }
        }
    }

    /// Open every link and remove every delay.
    pub fn heal_all(&self) {
        for l in self.links.values() {
            l.delay(Duration::ZERO);
            l.heal();
        }
    }

    /// Links not open, as `from->to` strings (for logs and assertions).
    pub fn faulty_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| l.mode() != LinkMode::Open)
            .map(|((f, t), l)| format!("{f}->{t} ({:?})", l.mode()))
            .collect()
    }

    /// Total bytes forwarded from `from` to `to` and back on that link.
    pub fn bytes(&self, from: &str, to: &str) -> (u64, u64) {
        self.link(from, to).bytes_forwarded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    /// A server answering each connection with its own name, then closing.
    fn name_server(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let _ = s.write_all(name.as_bytes());
            }
        });
        addr
    }

    /// Whom `from` reaches when dialing `to` (None: the link is down).
    fn reach(mesh: &PartitionedMesh, from: &str, to: &str) -> Option<String> {
        let (_, addr) = mesh
            .dial_addrs(from)
            .into_iter()
            .find(|(n, _)| n == to)
            .unwrap();
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        (!got.is_empty()).then_some(got)
    }

    #[test]
    fn mesh_partitions_and_heals() {
        let members = [
            ("n1", name_server("n1")),
            ("n2", name_server("n2")),
            ("n3", name_server("n3")),
        ];
        let mesh = PartitionedMesh::start(&members).unwrap();
        let o = mesh.dial_override("n1");
        assert!(
            o.starts_with("n2=127.0.0.1:") && o.contains(",n3=127.0.0.1:"),
            "{o}"
        );
        assert_eq!(reach(&mesh, "n1", "n3").as_deref(), Some("n3"));

        mesh.isolate("n2");
        assert_eq!(mesh.faulty_links().len(), 4);
        assert_eq!(reach(&mesh, "n1", "n2"), None);
        assert_eq!(reach(&mesh, "n2", "n3"), None);
        assert_eq!(reach(&mesh, "n3", "n1").as_deref(), Some("n1"));

        mesh.heal_all();
        assert!(mesh.faulty_links().is_empty());
        assert_eq!(reach(&mesh, "n2", "n3").as_deref(), Some("n3"));

        mesh.partition(&["n1"], &["n2", "n3"]);
        assert_eq!(reach(&mesh, "n3", "n1"), None);
        assert_eq!(reach(&mesh, "n2", "n3").as_deref(), Some("n3"));
        mesh.heal_all();
        assert_eq!(reach(&mesh, "n3", "n1").as_deref(), Some("n1"));
    }
}
