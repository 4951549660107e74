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

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use prost::Message;
use shale_api::authpb::{permission, Permission, Role, User, UserAddOptions};
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest,
};
use shale_storage::Engine;

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
struct Coverage(Vec<Interval>);

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

    fn contains_point(&self, key: &[u8]) -> bool {
        self.containing_start(key)
            .is_some_and(|iv| iv.end.as_ref().is_none_or(|e| key < e.as_slice()))
    }

    fn contains_range(&self, key: &[u8], end: Option<&[u8]>) -> bool {
        self.containing_start(key)
            .is_some_and(|iv| end_le(&end.map(<[u8]>::to_vec), &iv.end))
    }
}

/// The merged permissions of one user.
#[derive(Debug, Clone, Default)]
struct UserPerms {
    read: Coverage,
    write: Coverage,
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

    fn refresh_perms(&mut self) {
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

    fn commit_revision(&mut self, w: &mut Vec<MetaWrite>) {
        self.revision += 1;
        w.push((
            REVISION_KEY.to_vec(),
            Some(self.revision.to_be_bytes().to_vec()),
        ));
    }

    fn put_user(&mut self, name: &str, u: User, w: &mut Vec<MetaWrite>) {
        w.push((user_key(name), Some(u.encode_to_vec())));
        self.users.insert(name.to_string(), u);
    }

    fn put_role(&mut self, name: &str, r: Role, w: &mut Vec<MetaWrite>) {
        w.push((role_key(name), Some(r.encode_to_vec())));
        self.roles.insert(name.to_string(), r);
    }

    // ---------------------------------------------------------------- apply

    pub fn auth_enable(&mut self, w: &mut Vec<MetaWrite>) -> Result<(), EtcdError> {
        if self.enabled {
            return Ok(());
        }
        let u = self
            .users
            .get(ROOT_USER)
            .ok_or(EtcdError::RootUserNotExist)?;
        if !is_root(u) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.enabled = true;
        w.push((ENABLED_KEY.to_vec(), Some(vec![1])));
        // etcd 3.5 persists the revision on enable without incrementing it.
        w.push((
            REVISION_KEY.to_vec(),
            Some(self.revision.to_be_bytes().to_vec()),
        ));
        Ok(())
    }

    pub fn auth_disable(&mut self, w: &mut Vec<MetaWrite>) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        w.push((ENABLED_KEY.to_vec(), Some(vec![0])));
        self.commit_revision(w);
        self.disabled_at = self.revision;
    }

    /// `r.hashed_password` is base64 of the bcrypt hash (empty with `no_password`).
    pub fn user_add(
        &mut self,
        r: &AuthUserAddRequest,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(EtcdError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password {
            Bytes::new()
        } else {
            decode_hash(&r.hashed_password)?
        };
        let u = User {
            name: Bytes::from(r.name.clone()),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        self.put_user(&r.name, u, w);
        self.commit_revision(w);
        self.tokens_valid_from.insert(r.name.clone(), self.revision);
        self.refresh_perms();
        Ok(())
    }

    pub fn user_delete(&mut self, name: &str, w: &mut Vec<MetaWrite>) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT_USER {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.users.remove(name).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        w.push((user_key(name), None));
        self.tokens_valid_from.remove(name);
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }

    pub fn user_change_password(
        &mut self,
        r: &AuthUserChangePasswordRequest,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        let Some(u) = self.users.get(&r.name) else {
            return Err(EtcdError::UserNotFound);
        };
        let mut u = u.clone();
        if !u.options.is_some_and(|o| o.no_password) {
            u.password = decode_hash(&r.hashed_password)?;
        }
        self.put_user(&r.name, u, w);
        self.commit_revision(w);
        self.tokens_valid_from.insert(r.name.clone(), self.revision);
        self.refresh_perms();
        Ok(())
    }

    pub fn user_grant_role(
        &mut self,
        user: &str,
        role: &str,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        let Some(u) = self.users.get(user) else {
            return Err(EtcdError::UserNotFound);
        };
        if role != ROOT_ROLE && !self.roles.contains_key(role) {
            return Err(EtcdError::RoleNotFound);
        }
        if u.roles.iter().any(|r| r == role) {
            return Ok(()); // etcd ignores a duplicate grant (no revision change)
        }
        let mut u = u.clone();
        u.roles.push(role.to_string());
        u.roles.sort();
        self.put_user(user, u, w);
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }

    pub fn user_revoke_role(
        &mut self,
        user: &str,
        role: &str,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        if self.enabled && user == ROOT_USER && role == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let Some(u) = self.users.get(user) else {
            return Err(EtcdError::UserNotFound);
        };
        if !u.roles.iter().any(|r| r == role) {
            return Err(EtcdError::RoleNotGranted);
        }
        let mut u = u.clone();
        u.roles.retain(|r| r != role);
        self.put_user(user, u, w);
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }

    pub fn role_add(&mut self, name: &str, w: &mut Vec<MetaWrite>) -> Result<(), EtcdError> {
        if name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        if self.roles.contains_key(name) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        self.put_role(
            name,
            Role {
                name: Bytes::from(name.to_string()),
                key_permission: Vec::new(),
            },
            w,
        );
        self.commit_revision(w);
        Ok(())
    }

    pub fn role_delete(&mut self, name: &str, w: &mut Vec<MetaWrite>) -> Result<(), EtcdError> {
        if self.enabled && name == ROOT_ROLE {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.roles.remove(name).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        w.push((role_key(name), None));
        let holders: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| u.roles.iter().any(|r| r == name))
            .map(|(n, _)| n.clone())
            .collect();
        for h in holders {
            let mut u = self.users[&h].clone();
            u.roles.retain(|r| r != name);
            self.put_user(&h, u, w);
        }
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }

    pub fn role_grant_permission(
        &mut self,
        r: &AuthRoleGrantPermissionRequest,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        let Some(perm) = &r.perm else {
            return Err(EtcdError::PermissionNotGiven);
        };
        if !valid_permission_range(&perm.key, &perm.range_end) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let Some(role) = self.roles.get(&r.name) else {
            return Err(EtcdError::RoleNotFound);
        };
        let mut role = role.clone();
        let idx = role.key_permission.partition_point(|p| p.key < perm.key);
        match role.key_permission.get_mut(idx) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type
            }
            _ => {
                role.key_permission.push(Permission {
                    perm_type: perm.perm_type,
                    key: perm.key.clone(),
                    range_end: perm.range_end.clone(),
                });
                // Stable sort by key, like Go's sort.Sort on a nearly sorted slice keeps
                // equal keys in insertion order in practice.
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.put_role(&r.name, role, w);
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        r: &AuthRoleRevokePermissionRequest,
        w: &mut Vec<MetaWrite>,
    ) -> Result<(), EtcdError> {
        let Some(role) = self.roles.get(&r.role) else {
            return Err(EtcdError::RoleNotFound);
        };
        let mut role = role.clone();
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| !(p.key == r.key && p.range_end == r.range_end));
        if role.key_permission.len() == before {
            return Err(EtcdError::PermissionNotGranted);
        }
        self.put_role(&r.role, role, w);
        self.commit_revision(w);
        self.refresh_perms();
        Ok(())
    }
}

/// The stored password hash from a request's `hashedPassword` (base64, as etcd sends it).
fn decode_hash(b64: &str) -> Result<Bytes, EtcdError> {
    decode_base64(b64)
        .map(Bytes::from)
        .ok_or(EtcdError::AuthFailed)
}

/// Standard base64 (with padding) decoding; `None` on malformed input.
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Standard base64 encoding with padding.
pub fn encode_base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: permission::Type, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: t as i32,
            key: Bytes::from(key.to_string()),
            range_end: Bytes::from(end.to_string()),
        }
    }

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "$2a$10$abcdefghijklmnopqrstuv",
        ] {
            let e = encode_base64(s.as_bytes());
            assert_eq!(decode_base64(&e).unwrap(), s.as_bytes(), "{e}");
        }
        assert_eq!(encode_base64(b"ab"), "YWI=");
        assert!(decode_base64("@@@@").is_none());
    }

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

    #[test]
    fn management_errors_and_revisions() {
        let mut s = AuthStore::default();
        let mut w = Vec::new();
        assert_eq!(s.revision(), 1);
        assert_eq!(s.auth_enable(&mut w), Err(EtcdError::RootUserNotExist));
        assert_eq!(
            s.user_add(&AuthUserAddRequest::default(), &mut w),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(s.role_add("", &mut w), Err(EtcdError::RoleEmpty));
        s.role_add("r", &mut w).unwrap();
        assert_eq!(s.revision(), 2);
        assert_eq!(s.role_add("r", &mut w), Err(EtcdError::RoleAlreadyExist));
        assert_eq!(
            s.user_grant_role("nobody", "r", &mut w),
            Err(EtcdError::UserNotFound)
        );
        let u = AuthUserAddRequest {
            name: "u".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        };
        s.user_add(&u, &mut w).unwrap();
        assert_eq!(s.user_add(&u, &mut w), Err(EtcdError::UserAlreadyExist));
        assert_eq!(
            s.user_grant_role("u", "nope", &mut w),
            Err(EtcdError::RoleNotFound)
        );
        s.user_grant_role("u", "r", &mut w).unwrap();
        let rev = s.revision();
        s.user_grant_role("u", "r", &mut w).unwrap();
        assert_eq!(s.revision(), rev, "duplicate grant is a no-op");
        assert_eq!(
            s.user_revoke_role("u", "x", &mut w),
            Err(EtcdError::RoleNotGranted)
        );
        let g = |p| AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: p,
        };
        assert_eq!(
            s.role_grant_permission(&g(None), &mut w),
            Err(EtcdError::PermissionNotGiven)
        );
        assert_eq!(
            s.role_grant_permission(&g(Some(perm(permission::Type::Read, "b", "a"))), &mut w),
            Err(EtcdError::InvalidAuthMgmt)
        );
        s.role_grant_permission(&g(Some(perm(permission::Type::Read, "b", ""))), &mut w)
            .unwrap();
        s.role_grant_permission(&g(Some(perm(permission::Type::Write, "b", ""))), &mut w)
            .unwrap();
        s.role_grant_permission(&g(Some(perm(permission::Type::Read, "a", "c"))), &mut w)
            .unwrap();
        let keys: Vec<_> = s
            .role("r")
            .unwrap()
            .key_permission
            .iter()
            .map(|p| (p.key.clone(), p.perm_type))
            .collect();
        assert_eq!(keys, vec![(Bytes::from("a"), 0), (Bytes::from("b"), 1)]);
        let rv = |k: &str, e: &str| AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: Bytes::from(k.to_string()),
            range_end: Bytes::from(e.to_string()),
        };
        assert_eq!(
            s.role_revoke_permission(&rv("a", ""), &mut w),
            Err(EtcdError::PermissionNotGranted)
        );
        s.role_revoke_permission(&rv("a", "c"), &mut w).unwrap();
        s.role_delete("r", &mut w).unwrap();
        assert!(
            s.user("u").unwrap().roles.is_empty(),
            "role delete removes it from users"
        );
        assert_eq!(s.role_delete("r", &mut w), Err(EtcdError::RoleNotFound));
        assert_eq!(s.user_delete("x", &mut w), Err(EtcdError::UserNotFound));
    }
}
