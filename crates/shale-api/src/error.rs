//! # The etcd error table
//!
//! [`EtcdError`] lists every error Shale returns to a client, one variant per
//! error of etcd's `api/v3rpc/rpctypes` package. Each variant carries, in one
//! table (the `etcd_errors!` invocation below):
//!
//! * `code_number()` — a stable, nonzero Shale id. It is persisted in the Raft
//!   log (`shalepb.InternalResponse.error`, where 0 means success), so a
//!   number is never reused or changed; new errors get new numbers.
//! * `code()` — the gRPC status code etcd uses ([`Code`]).
//! * `message()` — etcd's exact status message, e.g.
//!   `"etcdserver: mvcc: required revision has been compacted"`. Clients
//!   (clientv3, kube-apiserver) compare these strings, so they are copied
//!   character for character; `Display` prints the same text.
//!
//! Where etcd releases disagree on a code, the newest (3.6/main) code is used:
//! `NotCapable`, `NotSupportedForLearner` and `ClusterVersionUnavailable` are
//! `FailedPrecondition` (3.5 used `Unavailable`).
//!
//! With the `grpc` feature, `From<EtcdError> for tonic::Status` builds the
//! status and [`from_status`] maps a status back (code and message must both
//! match).

/// gRPC status codes (same numbering as `google.rpc.Code` / `tonic::Code`).
///
/// Defined here so that crates without the `grpc` feature can still reason
/// about codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    Canceled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// The numeric gRPC code.
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

#[cfg(feature = "grpc")]
impl From<Code> for tonic::Code {
    fn from(code: Code) -> Self {
        tonic::Code::from_i32(code.as_i32())
    }
}

/// Generates [`EtcdError`] and its lookup functions from one table of
/// `Variant = (code_number, Code, "message")` rows.
macro_rules! etcd_errors {
    ($( $(#[$doc:meta])* $variant:ident = ($num:literal, $code:ident, $msg:literal), )+) => {
        /// An error with etcd's exact gRPC code and message. See the module
        /// documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum EtcdError {
            $( $(#[$doc])* #[error($msg)] $variant, )+
        }

        impl EtcdError {
            /// Every variant, in table order.
            pub const ALL: &'static [EtcdError] = &[ $( EtcdError::$variant, )+ ];

            /// Stable nonzero id, persisted in `InternalResponse.error`.
            pub fn code_number(&self) -> u32 {
                match self { $( EtcdError::$variant => $num, )+ }
            }

            /// gRPC status code etcd uses for this error.
            pub fn code(&self) -> Code {
                match self { $( EtcdError::$variant => Code::$code, )+ }
            }

            /// etcd's exact status message.
            pub fn message(&self) -> &'static str {
                match self { $( EtcdError::$variant => $msg, )+ }
            }

            /// Inverse of [`EtcdError::code_number`]; `None` for 0 (success)
            /// and for unknown numbers.
            pub fn from_code_number(n: u32) -> Option<EtcdError> {
                match n { $( $num => Some(EtcdError::$variant), )+ _ => None }
            }
        }
    };
}

etcd_errors! {
    // ---- request validation (InvalidArgument)
    EmptyKey = (1, InvalidArgument, "etcdserver: key is not provided"),
    /// A txn op without a request (etcd reuses this text).
    KeyNotFound = (2, InvalidArgument, "etcdserver: key not found"),
    ValueProvided = (3, InvalidArgument, "etcdserver: value is provided"),
    LeaseProvided = (4, InvalidArgument, "etcdserver: lease is provided"),
    TooManyOps = (5, InvalidArgument, "etcdserver: too many operations in txn request"),
    DuplicateKey = (6, InvalidArgument, "etcdserver: duplicate key given in txn request"),
    InvalidClientApiVersion = (7, InvalidArgument, "etcdserver: invalid client api version"),
    InvalidSortOption = (8, InvalidArgument, "etcdserver: invalid sort option"),
    // ---- mvcc
    Compacted = (9, OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
    FutureRev = (10, OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
    NoSpace = (11, ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
    // ---- lease
    LeaseNotFound = (12, NotFound, "etcdserver: requested lease not found"),
    LeaseExist = (13, FailedPrecondition, "etcdserver: lease already exists"),
    LeaseTtlTooLarge = (14, OutOfRange, "etcdserver: too large lease TTL"),
    // ---- watch
    WatchCanceled = (15, Canceled, "etcdserver: watch canceled"),
    // ---- membership
    MemberExist = (16, FailedPrecondition, "etcdserver: member ID already exist"),
    PeerUrlExist = (17, FailedPrecondition, "etcdserver: Peer URLs already exists"),
    MemberNotEnoughStarted = (18, FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members"),
    MemberBadUrls = (19, InvalidArgument, "etcdserver: given member URLs are invalid"),
    MemberNotFound = (20, NotFound, "etcdserver: member not found"),
    MemberNotLearner = (21, FailedPrecondition, "etcdserver: can only promote a learner member"),
    LearnerNotReady = (22, FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader"),
    TooManyLearners = (23, FailedPrecondition, "etcdserver: too many learner members in cluster"),
    ClusterIdMismatch = (24, FailedPrecondition, "etcdserver: cluster ID mismatch"),
    // ---- request size / rate
    RequestTooLarge = (25, InvalidArgument, "etcdserver: request is too large"),
    TooManyRequests = (26, ResourceExhausted, "etcdserver: too many requests"),
    // ---- auth
    RootUserNotExist = (27, FailedPrecondition, "etcdserver: root user does not exist"),
    RootRoleNotExist = (28, FailedPrecondition, "etcdserver: root user does not have root role"),
    UserAlreadyExist = (29, FailedPrecondition, "etcdserver: user name already exists"),
    UserEmpty = (30, InvalidArgument, "etcdserver: user name is empty"),
    UserNotFound = (31, FailedPrecondition, "etcdserver: user name not found"),
    RoleAlreadyExist = (32, FailedPrecondition, "etcdserver: role name already exists"),
    RoleNotFound = (33, FailedPrecondition, "etcdserver: role name not found"),
    RoleEmpty = (34, InvalidArgument, "etcdserver: role name is empty"),
    AuthFailed = (35, InvalidArgument, "etcdserver: authentication failed, invalid user ID or password"),
    PermissionNotGiven = (36, InvalidArgument, "etcdserver: permission not given"),
    PermissionDenied = (37, PermissionDenied, "etcdserver: permission denied"),
    RoleNotGranted = (38, FailedPrecondition, "etcdserver: role is not granted to the user"),
    PermissionNotGranted = (39, FailedPrecondition, "etcdserver: permission is not granted to the role"),
    AuthNotEnabled = (40, FailedPrecondition, "etcdserver: authentication is not enabled"),
    InvalidAuthToken = (41, Unauthenticated, "etcdserver: invalid auth token"),
    InvalidAuthMgmt = (42, InvalidArgument, "etcdserver: invalid auth management"),
    AuthOldRevision = (43, InvalidArgument, "etcdserver: revision of auth store is old"),
    // ---- leadership / availability
    NoLeader = (44, Unavailable, "etcdserver: no leader"),
    NotLeader = (45, FailedPrecondition, "etcdserver: not leader"),
    LeaderChanged = (46, Unavailable, "etcdserver: leader changed"),
    NotCapable = (47, FailedPrecondition, "etcdserver: not capable"),
    Stopped = (48, Unavailable, "etcdserver: server stopped"),
    Timeout = (49, Unavailable, "etcdserver: request timed out"),
    TimeoutDueToLeaderFail = (50, Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
    TimeoutDueToConnectionLost = (51, Unavailable, "etcdserver: request timed out, possibly due to connection lost"),
    TimeoutWaitAppliedIndex = (52, Unavailable, "etcdserver: request timed out, waiting for the applied index took too long"),
    Unhealthy = (53, Unavailable, "etcdserver: unhealthy cluster"),
    Corrupt = (54, DataLoss, "etcdserver: corrupt cluster"),
    NotSupportedForLearner = (55, FailedPrecondition, "etcdserver: rpc not supported for learner"),
    BadLeaderTransferee = (56, FailedPrecondition, "etcdserver: bad leader transferee"),
    // ---- downgrade
    WrongDowngradeVersionFormat = (57, InvalidArgument, "etcdserver: wrong downgrade target version format"),
    InvalidDowngradeTargetVersion = (58, InvalidArgument, "etcdserver: invalid downgrade target version"),
    ClusterVersionUnavailable = (59, FailedPrecondition, "etcdserver: cluster version not found during downgrade"),
    DowngradeInProcess = (60, FailedPrecondition, "etcdserver: cluster has a downgrade job in progress"),
    NoInflightDowngrade = (61, FailedPrecondition, "etcdserver: no inflight downgrade job"),
    // ---- context
    Canceled = (62, Canceled, "etcdserver: request canceled"),
    DeadlineExceeded = (63, DeadlineExceeded, "etcdserver: context deadline exceeded"),
}

impl EtcdError {
    /// The message without the `"etcdserver: "` prefix, the form etcd uses in
    /// `WatchResponse.cancel_reason` (e.g. `"mvcc: required revision has
    /// been compacted"`).
    pub fn message_without_prefix(&self) -> &'static str {
        let msg = self.message();
        msg.strip_prefix("etcdserver: ").unwrap_or(msg)
    }
}

#[cfg(feature = "grpc")]
impl From<EtcdError> for tonic::Status {
    fn from(err: EtcdError) -> Self {
        tonic::Status::new(err.code().into(), err.message())
    }
}

/// Maps a `tonic::Status` back to the [`EtcdError`] whose code and message it
/// carries exactly; `None` for any other status.
#[cfg(feature = "grpc")]
pub fn from_status(status: &tonic::Status) -> Option<EtcdError> {
    let code = status.code() as i32;
    let msg = status.message();
    EtcdError::ALL
        .iter()
        .copied()
        .find(|e| e.code().as_i32() == code && e.message() == msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn code_numbers_are_unique_nonzero_and_round_trip() {
        let mut seen = HashSet::new();
        for e in EtcdError::ALL {
            let n = e.code_number();
            assert_ne!(n, 0, "{e:?}");
            assert!(seen.insert(n), "duplicate code number {n}");
            assert_eq!(EtcdError::from_code_number(n), Some(*e));
        }
        assert_eq!(EtcdError::from_code_number(0), None);
        assert_eq!(EtcdError::from_code_number(u32::MAX), None);
    }

    #[test]
    fn messages_are_unique_and_prefixed() {
        let mut seen = HashSet::new();
        for e in EtcdError::ALL {
            assert!(e.message().starts_with("etcdserver: "), "{e:?}");
            assert!(
                seen.insert(e.message()),
                "duplicate message {}",
                e.message()
            );
            assert_eq!(e.to_string(), e.message());
        }
    }

    #[test]
    fn design_table_rows() {
        use EtcdError::*;
        let rows = [
            (
                EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (
                LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (Timeout, Code::Unavailable, "etcdserver: request timed out"),
            (
                InvalidAuthToken,
                Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                PermissionDenied,
                Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                AuthFailed,
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
        ];
        for (e, code, msg) in rows {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.message(), msg, "{e:?}");
        }
    }

    #[test]
    fn cancel_reason_form() {
        assert_eq!(
            EtcdError::Compacted.message_without_prefix(),
            "mvcc: required revision has been compacted"
        );
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn status_round_trip() {
        for e in EtcdError::ALL {
            let status = tonic::Status::from(*e);
            assert_eq!(status.code() as i32, e.code().as_i32());
            assert_eq!(status.message(), e.message());
            assert_eq!(from_status(&status), Some(*e));
        }
        let wrong_code = tonic::Status::new(tonic::Code::Internal, EtcdError::NoLeader.message());
        assert_eq!(from_status(&wrong_code), None);
        assert_eq!(from_status(&tonic::Status::internal("boom")), None);
    }

    #[cfg(feature = "grpc")]
    #[test]
    fn code_matches_tonic_numbering() {
        assert_eq!(
            tonic::Code::from(Code::Unauthenticated),
            tonic::Code::Unauthenticated
        );
        assert_eq!(tonic::Code::from(Code::DataLoss), tonic::Code::DataLoss);
        assert_eq!(tonic::Code::from(Code::OutOfRange), tonic::Code::OutOfRange);
    }
}
