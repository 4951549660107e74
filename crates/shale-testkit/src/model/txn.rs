//! Txn requests of the [`Model`]: compares, branch checks and execution.

use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    compare, request_op, response_op, Compare, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use shale_api::mvccpb::KeyValue;

use super::{header, Model, Path, Write};

impl Model {
    /// A Txn request (read-only or not: the answers are the same).
    pub fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        let begin = self.rev;
        let path = self.path(t, begin);
        self.check_puts(t, &path)?;
        self.check_ranges(t, &path, begin)?;
        let mut w = Write { begin, subs: 0 };
        match self.exec(&mut w, t, &path) {
            Ok(mut resp) => {
                resp.header = header(w.read_rev());
                self.finish(w);
                Ok(resp)
            }
            Err(e) => {
                self.rollback(w);
                Err(e)
            }
        }
    }

    fn path(&self, t: &TxnRequest, at: i64) -> Path {
        let ok = t.compare.iter().all(|c| self.compare(c, at));
        let ops = if ok { &t.success } else { &t.failure };
        let nested = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestTxn(n)) => Some(self.path(n, at)),
                _ => None,
            })
            .collect();
        Path { ok, nested }
    }

    fn compare(&self, c: &Compare, at: i64) -> bool {
        use compare::CompareTarget;
        let kvs = self.in_range_at(&c.key, &c.range_end, at);
        if kvs.is_empty() {
            if c.target == CompareTarget::Value as i32 {
                return false;
            }
            return compare_kv(c, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_kv(c, kv))
    }

    fn check_puts(&self, t: &TxnRequest, path: &Path) -> Result<(), EtcdError> {
        let mut nested = path.nested.iter();
        for op in if path.ok { &t.success } else { &t.failure } {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease) && self.get(&p.key, self.rev).is_none() {
                        return Err(EtcdError::KeyNotFound);
                    }
                    if p.lease != 0 && !self.leases.contains(&p.lease) {
                        return Err(EtcdError::LeaseNotFound);
                    }
                }
                Some(request_op::Request::RequestTxn(n)) => {
                    self.check_puts(n, nested.next().expect("path of nested txn"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_ranges(&self, t: &TxnRequest, path: &Path, cur: i64) -> Result<(), EtcdError> {
        let mut nested = path.nested.iter();
        for op in if path.ok { &t.success } else { &t.failure } {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    if r.revision != 0 && r.revision > cur {
                        return Err(EtcdError::FutureRev);
                    }
                    if r.revision != 0 && r.revision < self.compact {
                        return Err(EtcdError::Compacted);
                    }
                }
                Some(request_op::Request::RequestTxn(n)) => {
                    self.check_ranges(n, nested.next().expect("path of nested txn"), cur)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn exec(
        &mut self,
        w: &mut Write,
        t: &TxnRequest,
        path: &Path,
    ) -> Result<TxnResponse, EtcdError> {
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in if path.ok { &t.success } else { &t.failure } {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => Some(
                    response_op::Response::ResponseRange(self.range_at_view(r, w.read_rev())?),
                ),
                Some(request_op::Request::RequestPut(p)) => {
                    Some(response_op::Response::ResponsePut(self.put_in(w, p)?))
                }
                Some(request_op::Request::RequestDeleteRange(d)) => Some(
                    response_op::Response::ResponseDeleteRange(self.delete_in(w, d)),
                ),
                Some(request_op::Request::RequestTxn(n)) => {
                    let mut r = self.exec(w, n, nested.next().expect("path of nested txn"))?;
                    r.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: path.ok,
            responses,
        })
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_ref().cmp(want)
        }
        Ok(CompareTarget::Version) => {
            let want = match c.target_union {
                Some(TargetUnion::Version(v)) => v,
                _ => 0,
            };
            kv.version.cmp(&want)
        }
        Ok(CompareTarget::Create) => {
            let want = match c.target_union {
                Some(TargetUnion::CreateRevision(v)) => v,
                _ => 0,
            };
            kv.create_revision.cmp(&want)
        }
        Ok(CompareTarget::Mod) => {
            let want = match c.target_union {
                Some(TargetUnion::ModRevision(v)) => v,
                _ => 0,
            };
            kv.mod_revision.cmp(&want)
        }
        Ok(CompareTarget::Lease) => {
            let want = match c.target_union {
                Some(TargetUnion::Lease(v)) => v,
                _ => 0,
            };
            kv.lease.cmp(&want)
        }
        Err(_) => std::cmp::Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}
