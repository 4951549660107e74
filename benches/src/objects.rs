//! Kubernetes-shaped keys and values.
//!
//! kube-apiserver stores objects under `/registry/<resource>/<namespace>/<name>` and encodes
//! them as protobuf behind the 4-byte magic `k8s\0` (a `runtime.Unknown` envelope: type meta
//! `{apiVersion, kind}`, then the raw object). The harness does not need real Pods, only bytes
//! that look and weigh like them: [`ObjectTemplate`] builds such an envelope of an exact target
//! size once (metadata fields plus an opaque padding field), and [`ObjectTemplate::render`]
//! stamps a per-write generation counter into it, so every write carries a distinct value
//! without re-encoding. Rendering is a copy plus 8 bytes.
//!
//! Invariant: a rendered value is exactly `size` bytes (or the minimal envelope when `size`
//! is smaller than it) and starts with `k8s\0`.

use bytes::{BufMut, Bytes, BytesMut};

/// The magic prefix of kube-apiserver's protobuf storage encoding.
pub const K8S_MAGIC: &[u8] = b"k8s\0";

/// Which Kubernetes resource a key space holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Lease,
    Event,
}

impl Kind {
    /// The registry prefix, ending in `/`, that prefix watches and lists use.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Pod => "/registry/pods/",
            Kind::Lease => "/registry/leases/kube-node-lease/",
            Kind::Event => "/registry/events/",
        }
    }

    fn api_kind(self) -> (&'static str, &'static str) {
        match self {
            Kind::Pod => ("v1", "Pod"),
            Kind::Lease => ("coordination.k8s.io/v1", "Lease"),
            Kind::Event => ("v1", "Event"),
        }
    }
}

/// The key of object `slot` of `kind`, spread over `namespaces` namespaces (leases all live
/// in `kube-node-lease`).
pub fn key(kind: Kind, slot: u64, namespaces: u64) -> Bytes {
    let ns = slot % namespaces.max(1);
    let k = match kind {
        Kind::Pod => format!("/registry/pods/ns-{ns:03}/pod-{slot:07}-7d9f8c6b5"),
        Kind::Lease => format!("/registry/leases/kube-node-lease/node-{slot:05}"),
        Kind::Event => format!("/registry/events/ns-{ns:03}/pod-{slot:09}.17a3c2b1d4e5f6a7"),
    };
    Bytes::from(k)
}

fn put_tag(b: &mut BytesMut, field: u32, wire: u8) {
    put_uvarint(b, u64::from(field) << 3 | u64::from(wire));
}

fn put_uvarint(b: &mut BytesMut, mut x: u64) {
    while x >= 0x80 {
        b.put_u8((x as u8) | 0x80);
        x >>= 7;
    }
    b.put_u8(x as u8);
}

fn put_str(b: &mut BytesMut, field: u32, s: &[u8]) {
    put_tag(b, field, 2);
    put_uvarint(b, s.len() as u64);
    b.put_slice(s);
}

/// A pre-encoded object value of a fixed size with a slot for a generation counter.
#[derive(Clone, Debug)]
pub struct ObjectTemplate {
    bytes: Bytes,
    /// Offset of the 8-byte generation field (a fixed64 inside the metadata).
    gen_at: usize,
}

impl ObjectTemplate {
    /// An object named after `key` weighing `size` bytes.
    pub fn new(kind: Kind, key: &[u8], size: usize) -> Self {
        let (api_version, kind_name) = kind.api_kind();
        let name = key.rsplit(|c| *c == b'/').next().unwrap_or(key);
        let mut meta = BytesMut::new();
        put_str(&mut meta, 1, name);
        put_str(&mut meta, 3, b"default");
        put_str(&mut meta, 5, b"5f0c6d1e-8a3b-4c2d-9e7f-0a1b2c3d4e5f");
        // field 6: generation as fixed64 (wire type 1), patched per write
        put_tag(&mut meta, 6, 1);
        let gen_in_meta = meta.len();
        meta.put_u64_le(0);
        put_str(&mut meta, 11, b"app=bench,tier=backend");
        let mut raw = BytesMut::new();
        put_str(&mut raw, 1, &meta);
        let mut tm = BytesMut::new();
        put_str(&mut tm, 1, api_version.as_bytes());
        put_str(&mut tm, 2, kind_name.as_bytes());
        let mut out = BytesMut::with_capacity(size.max(64));
        out.put_slice(K8S_MAGIC);
        put_str(&mut out, 1, &tm);
        // raw: the object; its metadata generation sits at a fixed offset
        put_tag(&mut out, 2, 2);
        // the raw field's length covers meta + padding; pad to reach `size`
        let fixed = out.len() + raw.len();
        // padding field 9 (spec/status stand-in): tag + len varint + bytes
        let pad_len = size.saturating_sub(fixed + 2 + 6);
        let mut pad_field = BytesMut::new();
        if pad_len > 0 {
            let filler: Vec<u8> = (0..pad_len).map(|i| b'a' + (i % 26) as u8).collect();
            put_str(&mut pad_field, 9, &filler);
        }
        let raw_len = raw.len() + pad_field.len();
        put_uvarint(&mut out, raw_len as u64);
        // offset of the generation: out so far + raw's tag/len prefix + position in meta
        let raw_prefix = raw.len() - meta.len();
        let gen_at = out.len() + raw_prefix + gen_in_meta;
        out.put_slice(&raw);
        out.put_slice(&pad_field);
        // tune to the exact size when varint widths made us miss by a few bytes
        while out.len() < size {
            out.put_u8(0);
        }
        if out.len() > size && size >= 64 {
            out.truncate(size);
        }
        Self {
            bytes: out.freeze(),
            gen_at,
        }
    }

    /// The value with generation `gen` stamped in.
    pub fn render(&self, gen: u64) -> Bytes {
        let mut b = BytesMut::from(&self.bytes[..]);
        if self.gen_at + 8 <= b.len() {
            b[self.gen_at..self.gen_at + 8].copy_from_slice(&gen.to_le_bytes());
        }
        b.freeze()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shape() {
        for size in [512, 4096, 1000, 100_000] {
            let k = key(Kind::Pod, 42, 100);
            let t = ObjectTemplate::new(Kind::Pod, &k, size);
            let v = t.render(7);
            assert_eq!(v.len(), size);
            assert!(v.starts_with(K8S_MAGIC));
            assert_ne!(v, t.render(8));
        }
        assert_eq!(
            &key(Kind::Pod, 142, 100)[..],
            b"/registry/pods/ns-042/pod-0000142-7d9f8c6b5"
        );
        assert!(key(Kind::Lease, 3, 100).starts_with(Kind::Lease.prefix().as_bytes()));
        assert!(key(Kind::Event, 3, 10).starts_with(Kind::Event.prefix().as_bytes()));
    }
}
