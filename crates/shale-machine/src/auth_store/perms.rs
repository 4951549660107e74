//! Permission coverage: the merged key intervals a user may read or write.

use std::collections::HashMap;

use shale_api::authpb::permission;

use super::AuthStore;

/// Half-open key interval; `end = None` is +infinity.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interval {
    begin: Vec<u8>,
    end: Option<Vec<u8>>,
}

fn end_le(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

/// Disjoint, sorted, maximal intervals (adjacent ones merged, as etcd's interval tree
/// treats `[a,b)` + `[b,c)` as contiguous).
#[derive(Debug, Clone, Default)]
pub(super) struct Coverage(Vec<Interval>);

impl Coverage {
    fn build(mut ivls: Vec<Interval>) -> Self {
        ivls.sort_by(|a, b| a.begin.cmp(&b.begin));
        let mut out: Vec<Interval> = Vec::with_capacity(ivls.len());
        for iv in ivls {
            if let Some(last) = out.last_mut() {
                let touches = match &last.end {
                    None => true,
                    Some(e) => iv.begin <= *e,
                };
                if touches {
                    if !end_le(&iv.end, &last.end) {
                        last.end = iv.end;
                    }
                    continue;
                }
            }
            out.push(iv);
        }
        Coverage(out)
    }

    /// The merged interval starting at or before `key`.
    fn containing_start(&self, key: &[u8]) -> Option<&Interval> {
        let idx = self.0.partition_point(|iv| iv.begin.as_slice() <= key);
        idx.checked_sub(1).map(|i| &self.0[i])
    }

    pub(super) fn contains_point(&self, key: &[u8]) -> bool {
        self.containing_start(key)
            .is_some_and(|iv| iv.end.as_ref().is_none_or(|e| key < e.as_slice()))
    }

    pub(super) fn contains_range(&self, key: &[u8], end: Option<&[u8]>) -> bool {
        self.containing_start(key)
            .is_some_and(|iv| end_le(&end.map(<[u8]>::to_vec), &iv.end))
    }
}

/// The merged permissions of one user.
#[derive(Debug, Clone, Default)]
pub(super) struct UserPerms {
    pub(super) read: Coverage,
    pub(super) write: Coverage,
}

impl AuthStore {
    pub(super) fn refresh_perms(&mut self) {
        let mut perms = HashMap::with_capacity(self.users.len());
        for (name, u) in &self.users {
            let (mut read, mut write) = (Vec::new(), Vec::new());
            for role in u.roles.iter().filter_map(|r| self.roles.get(r)) {
                for p in &role.key_permission {
                    let iv = if p.range_end.is_empty() {
                        let mut end = p.key.to_vec();
                        end.push(0);
                        Interval {
                            begin: p.key.to_vec(),
                            end: Some(end),
                        }
                    } else if p.range_end.as_ref() == b"\0" {
                        Interval {
                            begin: p.key.to_vec(),
                            end: None,
                        }
                    } else {
                        Interval {
                            begin: p.key.to_vec(),
                            end: Some(p.range_end.to_vec()),
                        }
                    };
                    match permission::Type::try_from(p.perm_type) {
                        Ok(permission::Type::Read) => read.push(iv),
                        Ok(permission::Type::Write) => write.push(iv),
                        Ok(permission::Type::Readwrite) => {
                            read.push(iv.clone());
                            write.push(iv);
                        }
                        Err(_) => {}
                    }
                }
            }
            perms.insert(
                name.clone(),
                UserPerms {
                    read: Coverage::build(read),
                    write: Coverage::build(write),
                },
            );
        }
        self.perms = perms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_merges_and_checks() {
        let c = Coverage::build(vec![
            Interval {
                begin: b"b".to_vec(),
                end: Some(b"d".to_vec()),
            },
            Interval {
                begin: b"a".to_vec(),
                end: Some(b"b".to_vec()),
            },
            Interval {
                begin: b"x".to_vec(),
                end: None,
            },
        ]);
        assert_eq!(c.0.len(), 2);
        assert!(c.contains_point(b"a"));
        assert!(c.contains_point(b"c"));
        assert!(!c.contains_point(b"d"));
        assert!(c.contains_range(b"a", Some(b"d")));
        assert!(!c.contains_range(b"a", Some(b"e")));
        assert!(c.contains_range(b"y", None));
        assert!(!c.contains_range(b"c", None));
        assert!(!c.contains_point(b"0"));
    }
}
