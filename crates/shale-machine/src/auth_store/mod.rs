//! [`AuthStore`]: etcd's users, roles and permissions, replicated through Raft.
//!
//! Every change is applied deterministically from a command (passwords arrive already
//! bcrypt-hashed by the gRPC layer, as in etcd, so apply never hashes) and persisted in the
//! same atomic batch as the rest of the entry:
//!
//! | key            | value                                  |
//! |----------------|----------------------------------------|
//! | `u/` + name    | `authpb.User` (protobuf)               |
//! | `o/` + name    | `authpb.Role` (protobuf)               |
//! | `x/enabled`    | `[1]` enabled, `[0]` disabled          |
//! | `x/revision`   | auth revision, u64 big-endian          |
//!
//! The auth revision starts at 1 (etcd commits one revision when it creates the store) and
//! grows with every change, like etcd's: `AuthEnable` does not bump it, `AuthDisable` does,
//! a no-op `UserGrantRole` (role already granted) does not.
//!
//! Semantics follow etcd 3.5's `server/auth/store.go`; the permission check follows its
//! `range_perm_cache.go` (union of the user's roles' intervals, a range request must be
//! fully covered, `range_end = "\0"` is open-ended, the `root` role allows everything).

mod apply;
mod b64;
mod perms;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use prost::Message;
use shale_api::authpb::{Role, User};
use shale_api::error::EtcdError;
use shale_storage::Engine;

pub use b64::{decode_base64, encode_base64};
use perms::UserPerms;

pub const USER_PREFIX: &[u8] = b"u/";
pub const ROLE_PREFIX: &[u8] = b"o/";
pub const ENABLED_KEY: &[u8] = b"x/enabled";
pub const REVISION_KEY: &[u8] = b"x/revision";

pub const ROOT_USER: &str = "root";
pub const ROOT_ROLE: &str = "root";

/// Kind of access a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A storage write produced by an auth change: `(key, Some(value))` puts, `(key, None)`
/// deletes. The caller adds them to the apply batch.
pub type MetaWrite = (Vec<u8>, Option<Vec<u8>>);

pub fn user_key(name: &str) -> Vec<u8> {
    [USER_PREFIX, name.as_bytes()].concat()
}

pub fn role_key(name: &str) -> Vec<u8> {
    [ROLE_PREFIX, name.as_bytes()].concat()
}

/// Users, roles, the enabled flag and the auth revision.
#[derive(Debug, Clone)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, User>,
    roles: BTreeMap<String, Role>,
    perms: HashMap<String, UserPerms>,
    /// Local (not replicated) token validity: a token issued at auth revision `r` for user
    /// `u` is valid while `r >= tokens_valid_from[u]` and `r >= disabled_at`. Set when a user
    /// is added or its password changes, and for every user on load, so tokens issued before
    /// a password change, a delete, a disable or a snapshot install stop working.
    tokens_valid_from: HashMap<String, u64>,
    disabled_at: u64,
}

impl Default for AuthStore {
    fn default() -> Self {
        Self {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: HashMap::new(),
            tokens_valid_from: HashMap::new(),
            disabled_at: 0,
        }
    }
}

fn is_root(u: &User) -> bool {
    u.roles.iter().any(|r| r == ROOT_ROLE)
}

/// etcd's `isValidPermissionRange`: a non-empty key; `range_end` empty, greater than the
/// key, or `"\0"` (open-ended).
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == b"\0")
}

impl AuthStore {
    /// Loads the store from its storage keys.
    pub fn load(engine: &dyn Engine) -> Result<Self, String> {
        let mut s = AuthStore::default();
        if let Some(v) = engine.get(ENABLED_KEY).map_err(|e| e.to_string())? {
            s.enabled = v.first() == Some(&1);
        }
        if let Some(v) = engine.get(REVISION_KEY).map_err(|e| e.to_string())? {
            let b: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| "bad auth revision record".to_string())?;
            s.revision = u64::from_be_bytes(b);
        }
        for (prefix, is_user) in [(USER_PREFIX, true), (ROLE_PREFIX, false)] {
            let end = shale_storage::engine_prefix_end(prefix).unwrap_or_else(|| vec![0xff]);
            for item in engine.scan(Bound::Included(prefix), Bound::Excluded(&end[..])) {
                let (k, v) = item.map_err(|e| e.to_string())?;
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                if is_user {
                    let u = User::decode(v.as_slice())
                        .map_err(|e| format!("bad user record {name:?}: {e}"))?;
                    s.users.insert(name, u);
                } else {
                    let r = Role::decode(v.as_slice())
                        .map_err(|e| format!("bad role record {name:?}: {e}"))?;
                    s.roles.insert(name, r);
                }
            }
        }
        let rev = s.revision;
        s.tokens_valid_from = s.users.keys().map(|n| (n.clone(), rev)).collect();
        s.disabled_at = rev;
        s.refresh_perms();
        Ok(s)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// User names in byte order (etcd lists its bucket in key order).
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// True if a token issued for `user` at auth revision `issued_at` is still valid.
    pub fn token_valid(&self, user: &str, issued_at: u64) -> bool {
        self.enabled
            && issued_at >= self.disabled_at
            && self
                .tokens_valid_from
                .get(user)
                .is_some_and(|from| issued_at >= *from)
    }

    /// etcd's `IsAdminPermitted` for a known user name (auth enabled).
    pub fn check_admin(&self, user: &str) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        match self.users.get(user) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if is_root(u) => Ok(()),
            Some(_) => Err(EtcdError::PermissionDenied),
        }
    }

    /// etcd's `isOpPermitted` for a known user: `range_end` empty = one key, `"\0"` = every
    /// key >= `key`.
    pub fn check_op(
        &self,
        user: &str,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        let Some(u) = self.users.get(user) else {
            return Err(EtcdError::PermissionDenied);
        };
        if is_root(u) {
            return Ok(());
        }
        let Some(p) = self.perms.get(user) else {
            return Err(EtcdError::PermissionDenied);
        };
        let cov = match access {
            Access::Read => &p.read,
            Access::Write => &p.write,
        };
        let ok = if range_end.is_empty() {
            cov.contains_point(key)
        } else if range_end == b"\0" {
            cov.contains_range(key, None)
        } else {
            cov.contains_range(key, Some(range_end))
        };
        if ok {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shale_api::authpb::{permission, Permission};
    use shale_api::etcdserverpb::AuthRoleGrantPermissionRequest;
    use shale_api::etcdserverpb::AuthUserAddRequest;

    pub(super) fn perm(t: permission::Type, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: t as i32,
            key: Bytes::from(key.to_string()),
            range_end: Bytes::from(end.to_string()),
        }
    }

    #[test]
    fn permission_checks_follow_etcd() {
        let mut s = AuthStore::default();
        let mut w = Vec::new();
        let add = |name: &str| AuthUserAddRequest {
            name: name.into(),
            hashed_password: encode_base64(b"h"),
            ..Default::default()
        };
        s.user_add(&add("root"), &mut w).unwrap();
        s.user_add(&add("alice"), &mut w).unwrap();
        s.role_add("r", &mut w).unwrap();
        for p in [
            perm(permission::Type::Readwrite, "/a/", "/a0"),
            perm(permission::Type::Read, "/b", ""),
            perm(permission::Type::Write, "/z", "\0"),
        ] {
            s.role_grant_permission(
                &AuthRoleGrantPermissionRequest {
                    name: "r".into(),
                    perm: Some(p),
                },
                &mut w,
            )
            .unwrap();
        }
        s.user_grant_role("alice", "r", &mut w).unwrap();
        assert_eq!(s.auth_enable(&mut w), Err(EtcdError::RootRoleNotExist));
        s.user_grant_role("root", ROOT_ROLE, &mut w).unwrap();
        s.auth_enable(&mut w).unwrap();
        let ok = |k: &str, e: &str, a| s.check_op("alice", k.as_bytes(), e.as_bytes(), a).is_ok();
        assert!(ok("/a/x", "", Access::Read));
        assert!(ok("/a/x", "", Access::Write));
        assert!(ok("/a/", "/a0", Access::Read));
        assert!(!ok("/a/", "/b", Access::Read));
        assert!(ok("/b", "", Access::Read));
        assert!(!ok("/b", "", Access::Write));
        assert!(!ok("/c", "", Access::Read));
        assert!(ok("/zz", "\0", Access::Write));
        assert!(!ok("/zz", "\0", Access::Read));
        assert_eq!(
            s.check_op("", b"/a/x", b"", Access::Read),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(
            s.check_op("bob", b"/a/x", b"", Access::Read),
            Err(EtcdError::PermissionDenied)
        );
        assert!(s.check_op("root", b"\0", b"\0", Access::Write).is_ok());
        assert_eq!(s.check_admin("alice"), Err(EtcdError::PermissionDenied));
        assert_eq!(s.check_admin("bob"), Err(EtcdError::UserNotFound));
        assert!(s.check_admin("root").is_ok());
        // Root cannot be removed while enabled.
        assert_eq!(
            s.user_delete("root", &mut w),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            s.role_delete(ROOT_ROLE, &mut w),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            s.user_revoke_role("root", ROOT_ROLE, &mut w),
            Err(EtcdError::InvalidAuthMgmt)
        );
    }
}
