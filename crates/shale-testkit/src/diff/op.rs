//! Requests ([`Op`]) and replies ([`Reply`]) of the differential sequence.

use shale_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

/// One request of the sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseLeases,
}

impl Op {
    /// Short name for statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Range(_) => "range",
            Op::Put(_) => "put",
            Op::DeleteRange(_) => "delete",
            Op::Txn(_) => "txn",
            Op::Compact(_) => "compact",
            Op::LeaseGrant(_) => "lease_grant",
            Op::LeaseRevoke(_) => "lease_revoke",
            Op::LeaseTimeToLive(_) => "lease_ttl",
            Op::LeaseLeases => "lease_leases",
        }
    }

    /// Debug form, shortened when huge (too-many-ops txns, oversized values).
    pub fn brief(&self) -> String {
        let s = format!("{self:?}");
        if s.len() > 600 {
            let cut: String = s.chars().take(600).collect();
            format!("{cut}… ({} chars)", s.len())
        } else {
            s
        }
    }
}

/// One response: the message, or the gRPC error (code and message).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    LeaseLeases(LeaseLeasesResponse),
    Error { code: tonic::Code, message: String },
}

impl Reply {
    pub fn is_err(&self) -> bool {
        matches!(self, Reply::Error { .. })
    }

    /// An error from the transport, not from the server's logic (a crashed server).
    pub fn is_transport_failure(&self) -> bool {
        matches!(self, Reply::Error { code, message }
            if matches!(code, tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded)
                && !message.starts_with("etcdserver: "))
    }

    /// `header.revision` of a successful reply.
    pub fn revision(&self) -> Option<i64> {
        let h = match self {
            Reply::Range(r) => r.header.as_ref(),
            Reply::Put(r) => r.header.as_ref(),
            Reply::DeleteRange(r) => r.header.as_ref(),
            Reply::Txn(r) => r.header.as_ref(),
            Reply::Compact(r) => r.header.as_ref(),
            Reply::LeaseGrant(r) => r.header.as_ref(),
            Reply::LeaseRevoke(r) => r.header.as_ref(),
            Reply::LeaseTimeToLive(r) => r.header.as_ref(),
            Reply::LeaseLeases(r) => r.header.as_ref(),
            Reply::Error { .. } => None,
        };
        h.map(|h| h.revision)
    }
}

pub(super) fn reply<T>(
    r: std::result::Result<tonic::Response<T>, tonic::Status>,
    f: fn(T) -> Reply,
) -> Reply {
    match r {
        Ok(resp) => f(resp.into_inner()),
        Err(s) => Reply::Error {
            code: s.code(),
            message: s.message().to_string(),
        },
    }
}
