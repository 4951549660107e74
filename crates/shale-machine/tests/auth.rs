//! The replicated auth store through `Machine::apply`: errors as answers, persistence in the
//! apply batch, reload on open and through a snapshot.

use std::sync::Arc;

use bytes::Bytes;
use shale_api::authpb::{permission, Permission};
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::*;
use shale_machine::auth_store::{encode_base64, Access};
use shale_machine::internal_request::Request;
use shale_machine::{response_result, InternalRequest, Machine, MachineConfig};
use shale_storage::{Engine, MemoryEngine};

fn apply(m: &Machine, req: Request) -> Result<(), EtcdError> {
    let out = m
        .apply(
            vec![Some(InternalRequest {
                id: 1,
                now_unix_ms: 0,
                request: Some(req),
            })],
            Vec::new(),
        )
        .expect("apply");
    response_result(out.into_iter().next().unwrap()).map(|_| ())
}

fn user_add(name: &str) -> Request {
    Request::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: encode_base64(format!("hash-of-{name}").as_bytes()),
        ..Default::default()
    })
}

fn setup(m: &Machine) {
    apply(m, user_add("root")).unwrap();
    apply(m, user_add("alice")).unwrap();
    apply(
        m,
        Request::AuthRoleAdd(AuthRoleAddRequest { name: "r".into() }),
    )
    .unwrap();
    apply(
        m,
        Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(Permission {
                perm_type: permission::Type::Readwrite as i32,
                key: Bytes::from_static(b"/a/"),
                range_end: Bytes::from_static(b"/a0"),
            }),
        }),
    )
    .unwrap();
    apply(
        m,
        Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
            user: "alice".into(),
            role: "r".into(),
        }),
    )
    .unwrap();
}

fn check_state(m: &Machine) {
    let a = m.auth();
    assert!(a.is_enabled());
    assert_eq!(
        a.user_names(),
        vec!["alice".to_string(), "root".to_string()]
    );
    assert_eq!(a.role_names(), vec!["r".to_string(), "root".to_string()]);
    assert_eq!(a.user("alice").unwrap().password.as_ref(), b"hash-of-alice");
    assert_eq!(a.user("root").unwrap().roles, vec!["root".to_string()]);
    assert!(a.check_op("alice", b"/a/x", b"", Access::Write).is_ok());
    assert_eq!(
        a.check_op("alice", b"/b", b"", Access::Read),
        Err(EtcdError::PermissionDenied)
    );
    assert!(a.check_admin("root").is_ok());
}

#[test]
fn auth_applies_persists_and_reloads() {
    let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
    let m = Machine::open(engine.clone(), MachineConfig::default()).unwrap();
    assert_eq!(m.auth().revision(), 1);
    assert_eq!(
        apply(&m, Request::AuthEnable(AuthEnableRequest {})),
        Err(EtcdError::RootUserNotExist)
    );
    setup(&m);
    assert_eq!(
        apply(&m, Request::AuthEnable(AuthEnableRequest {})),
        Err(EtcdError::RootRoleNotExist)
    );
    apply(
        &m,
        Request::AuthRoleAdd(AuthRoleAddRequest {
            name: "root".into(),
        }),
    )
    .unwrap();
    apply(
        &m,
        Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        }),
    )
    .unwrap();
    apply(&m, Request::AuthEnable(AuthEnableRequest {})).unwrap();
    assert_eq!(
        apply(&m, user_add("alice")),
        Err(EtcdError::UserAlreadyExist)
    );
    assert_eq!(
        apply(
            &m,
            Request::AuthUserDelete(AuthUserDeleteRequest {
                name: "root".into()
            })
        ),
        Err(EtcdError::InvalidAuthMgmt)
    );
    let rev = m.auth().revision();
    assert_eq!(rev, 8, "1 + 7 changes (enable does not bump)");
    check_state(&m);
    drop(m);

    // Reload from the same storage.
    let m = Machine::open(engine.clone(), MachineConfig::default()).unwrap();
    assert_eq!(m.auth().revision(), rev);
    check_state(&m);

    // And through a snapshot into a fresh machine.
    let mut snap = Vec::new();
    m.write_snapshot(&mut snap).unwrap();
    let m2 = Machine::open(Arc::new(MemoryEngine::new()), MachineConfig::default()).unwrap();
    m2.install_snapshot(&mut std::io::Cursor::new(snap))
        .unwrap();
    assert_eq!(m2.auth().revision(), rev);
    check_state(&m2);

    // Disable bumps the revision and persists the flag.
    apply(&m, Request::AuthDisable(AuthDisableRequest {})).unwrap();
    drop(m);
    let m = Machine::open(engine, MachineConfig::default()).unwrap();
    assert!(!m.auth().is_enabled());
    assert_eq!(m.auth().revision(), rev + 1);
    apply(
        &m,
        Request::AuthUserDelete(AuthUserDeleteRequest {
            name: "root".into(),
        }),
    )
    .unwrap();
    apply(
        &m,
        Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "r".into() }),
    )
    .unwrap();
    assert!(m.auth().user("alice").unwrap().roles.is_empty());
}
