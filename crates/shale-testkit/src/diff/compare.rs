//! Normalization and comparison of the two sides' replies.

use bytes::Bytes;
use shale_api::etcdserverpb::{
    range_request, request_op, response_op, RangeRequest, RangeResponse, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
};
use shale_api::mvccpb::KeyValue;

use super::op::{Op, Reply};
use super::STABLE_SORT_MAX;

fn norm_header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn sort_value(kv: &KeyValue, target: i32) -> (i64, Bytes) {
    use range_request::SortTarget as T;
    match T::try_from(target) {
        Ok(T::Version) => (kv.version, Bytes::new()),
        Ok(T::Create) => (kv.create_revision, Bytes::new()),
        Ok(T::Mod) => (kv.mod_revision, Bytes::new()),
        Ok(T::Value) => (0, kv.value.clone()),
        _ => (0, kv.key.clone()),
    }
}

/// Make tie order of a non-KEY sort irrelevant where etcd's own order is not specified.
fn norm_range(req: Option<&RangeRequest>, resp: &mut RangeResponse) {
    norm_header(&mut resp.header);
    let Some(req) = req else { return };
    if req.sort_target == range_request::SortTarget::Key as i32 || resp.count <= STABLE_SORT_MAX {
        return;
    }
    let mut groups: Vec<Vec<KeyValue>> = Vec::new();
    for kv in resp.kvs.drain(..) {
        match groups.last_mut() {
            Some(g) if sort_value(&g[0], req.sort_target) == sort_value(&kv, req.sort_target) => {
                g.push(kv)
            }
            _ => groups.push(vec![kv]),
        }
    }
    let n = groups.len();
    for (i, mut g) in groups.into_iter().enumerate() {
        if resp.more && i + 1 == n {
            // cut by `limit`: which of the tied keys made it is unspecified; keep the count
            for kv in g {
                let (n, value) = sort_value(&kv, req.sort_target);
                resp.kvs.push(KeyValue {
                    key: Bytes::from_static(b"<one of a tie cut by limit>"),
                    version: n,
                    value,
                    ..Default::default()
                });
            }
        } else {
            g.sort_by(|a, b| a.key.cmp(&b.key));
            resp.kvs.extend(g);
        }
    }
}

fn norm_txn(req: Option<&TxnRequest>, resp: &mut TxnResponse) {
    norm_header(&mut resp.header);
    let branch = req.map(|r| {
        if resp.succeeded {
            &r.success
        } else {
            &r.failure
        }
    });
    for (i, op) in resp.responses.iter_mut().enumerate() {
        let rop = branch
            .and_then(|b| b.get(i))
            .and_then(|o| o.request.as_ref());
        norm_response_op(rop, op);
    }
}

fn norm_response_op(req: Option<&request_op::Request>, op: &mut ResponseOp) {
    use request_op::Request as Q;
    use response_op::Response as R;
    match op.response.as_mut() {
        Some(R::ResponseRange(r)) => norm_range(
            match req {
                Some(Q::RequestRange(q)) => Some(q),
                _ => None,
            },
            r,
        ),
        Some(R::ResponsePut(r)) => norm_header(&mut r.header),
        Some(R::ResponseDeleteRange(r)) => norm_header(&mut r.header),
        Some(R::ResponseTxn(r)) => norm_txn(
            match req {
                Some(Q::RequestTxn(q)) => Some(q),
                _ => None,
            },
            r,
        ),
        None => {}
    }
}

/// Normalize a reply for comparison (see the module docs for what is ignored).
pub fn normalize(op: &Op, reply: &Reply) -> Reply {
    let mut r = reply.clone();
    match (&mut r, op) {
        (Reply::Range(x), Op::Range(q)) => norm_range(Some(q), x),
        (Reply::Range(x), _) => norm_range(None, x),
        (Reply::Put(x), _) => norm_header(&mut x.header),
        (Reply::DeleteRange(x), _) => norm_header(&mut x.header),
        (Reply::Txn(x), Op::Txn(q)) => norm_txn(Some(q), x),
        (Reply::Txn(x), _) => norm_txn(None, x),
        (Reply::Compact(x), _) => norm_header(&mut x.header),
        (Reply::LeaseGrant(x), _) => norm_header(&mut x.header),
        (Reply::LeaseRevoke(x), _) => norm_header(&mut x.header),
        (Reply::LeaseTimeToLive(x), _) => {
            norm_header(&mut x.header);
            x.keys.sort();
        }
        (Reply::LeaseLeases(x), _) => {
            norm_header(&mut x.header);
            x.leases.sort_by_key(|l| l.id);
        }
        (Reply::Error { .. }, _) => {}
    }
    r
}

/// Compare two replies to `op`; `Err` describes the difference.
pub fn compare(op: &Op, a: &Reply, b: &Reply) -> std::result::Result<(), String> {
    let mut na = normalize(op, a);
    let mut nb = normalize(op, b);
    if let (Reply::LeaseTimeToLive(x), Reply::LeaseTimeToLive(y)) = (&mut na, &mut nb) {
        if (x.ttl - y.ttl).abs() > 2 || (x.ttl < 0) != (y.ttl < 0) {
            return Err(format!(
                "LeaseTimeToLive TTL {} vs {} (±2 allowed)",
                x.ttl, y.ttl
            ));
        }
        x.ttl = 0;
        y.ttl = 0;
    }
    if na == nb {
        Ok(())
    } else {
        Err(first_difference(&format!("{na:#?}"), &format!("{nb:#?}")))
    }
}

/// The first differing line of two pretty Debug dumps, with a little context.
pub fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la
        .iter()
        .zip(&lb)
        .position(|(x, y)| x != y)
        .unwrap_or(la.len().min(lb.len()));
    let ctx = |l: &[&str]| l[i.saturating_sub(3)..(i + 2).min(l.len())].join("\n");
    format!(
        "first difference at line {}:\n  reference: …\n{}\n  subject: …\n{}",
        i + 1,
        ctx(&la),
        ctx(&lb)
    )
}
