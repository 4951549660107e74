//! Member and cluster ids.
//!
//! Like etcd, ids are derived, not drawn: every member of a new cluster computes the same
//! id for each member of `--initial-cluster` (from its peer URLs and the cluster token) and
//! the same cluster id (from the member ids and the token), so they agree without talking.
//! A member added later gets an id from its peer URLs, the cluster id and the time.

/// FNV-1a, 64 bit, over `parts` (each followed by a 0 byte so boundaries count).
pub fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The id of a member of a new cluster, from its peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    match fnv64(&[&urls.join(","), token]) {
        0 => 1,
        id => id,
    }
}

/// The id of a new cluster, from its members' ids and the token.
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let ids: Vec<String> = ids.iter().map(|i| format!("{i:x}")).collect();
    match fnv64(&[&ids.join(","), token]) {
        0 => 1,
        id => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_urls_and_token_not_order() {
        let a = member_id(&["http://a:1".into(), "http://b:2".into()], "t");
        let b = member_id(&["http://b:2".into(), "http://a:1".into()], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:1".into()], "t"));
        assert_ne!(
            a,
            member_id(&["http://a:1".into(), "http://b:2".into()], "u")
        );
        assert_eq!(cluster_id(&[1, 2, 3], "t"), cluster_id(&[3, 1, 2], "t"));
        assert_ne!(cluster_id(&[1, 2, 3], "t"), cluster_id(&[1, 2, 3], "u"));
    }
}
