//! Applying replicated auth changes to an [`AuthStore`].

use bytes::Bytes;
use prost::Message;
use shale_api::authpb::{Permission, Role, User, UserAddOptions};
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest,
};

use super::{
    decode_base64, is_root, role_key, user_key, valid_permission_range, AuthStore, MetaWrite,
    ENABLED_KEY, REVISION_KEY, ROOT_ROLE, ROOT_USER,
};

impl AuthStore {
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

#[cfg(test)]
mod tests {
    use super::super::tests::perm;
    use super::*;
    use shale_api::authpb::permission;

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
