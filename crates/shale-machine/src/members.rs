//! Member attributes: what each member publishes about itself through the log (its name
//! and client URLs), as etcd's members publish their attributes after they start.
//!
//! The set of members and their peer URLs belongs to Raft (the group's membership); this
//! record only adds what Raft does not know. Records live under [`MEMBER_PREFIX`] keyed by
//! the member id (big endian), one per member; a later publish replaces the earlier one.
//! Records of removed members are harmless: MemberList only shows ids in the membership.

use std::ops::Bound;

use prost::Message;
use shale_api::shalepb::MemberAttr;
use shale_storage::Engine;

/// Engine key prefix of member attribute records.
pub const MEMBER_PREFIX: &[u8] = b"p/";

/// The engine key of member `id`'s attributes.
pub fn member_key(id: u64) -> Vec<u8> {
    let mut k = MEMBER_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Every published member record, by id order. A record that does not decode is skipped
/// (it only names a member; a damaged one must not stop the member list).
pub fn load_member_attrs(engine: &dyn Engine) -> crate::Result<Vec<MemberAttr>> {
    let end = shale_storage::engine_prefix_end(MEMBER_PREFIX).unwrap_or_else(|| vec![0xff]);
    let mut out = Vec::new();
    for item in engine.scan(Bound::Included(MEMBER_PREFIX), Bound::Excluded(&end[..])) {
        let (_, v) = item?;
        if let Ok(a) = MemberAttr::decode(&v[..]) {
            out.push(a);
        }
    }
    Ok(out)
}
