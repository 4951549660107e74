//! Range, Put, DeleteRange and Compact requests of the [`Model`].

use bytes::Bytes;
use shale_api::error::EtcdError;
use shale_api::etcdserverpb::{
    range_request, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse,
};
use shale_api::mvccpb::KeyValue;

use super::{header, Model, Write};

impl Model {
    // ---- requests -----------------------------------------------------------------------

    /// A Range request against the current revision.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.range_at_view(r, self.rev)
    }

    /// A Range as seen by a view whose current revision is `cur`.
    pub(super) fn range_at_view(
        &self,
        r: &RangeRequest,
        cur: i64,
    ) -> Result<RangeResponse, EtcdError> {
        use range_request::{SortOrder, SortTarget};
        if r.revision > cur {
            return Err(EtcdError::FutureRev);
        }
        let at = if r.revision <= 0 { cur } else { r.revision };
        if at < self.compact {
            return Err(EtcdError::Compacted);
        }
        let mut kvs = self.in_range_at(&r.key, &r.range_end, at);
        let count = kvs.len() as i64;
        if r.count_only {
            return Ok(RangeResponse {
                header: header(cur),
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        // etcd fetches only `limit + 1` keys (in key order) unless the request asks for a sort
        // order or a filter; the implicit ascending sort of a non-KEY target below then only
        // reorders those.
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        if r.limit > 0 && r.sort_order == SortOrder::None as i32 && !filtered {
            kvs.truncate(r.limit as usize + 1);
        }
        if r.max_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
        }
        if r.min_mod_revision != 0 {
            kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
        }
        if r.max_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
        }
        if r.min_create_revision != 0 {
            kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
        }
        let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
        let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
        if target != SortTarget::Key && order == SortOrder::None {
            order = SortOrder::Ascend;
        }
        let by = |a: &KeyValue, b: &KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by(by),
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse {
            header: header(cur),
            kvs,
            more,
            count,
        })
    }

    /// A Put request (checks the lease first).
    pub fn put(&mut self, p: &PutRequest) -> Result<PutResponse, EtcdError> {
        if p.lease != 0 && !self.leases.contains(&p.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        let mut w = Write {
            begin: self.rev,
            subs: 0,
        };
        match self.put_in(&mut w, p) {
            Ok(resp) => {
                self.finish(w);
                Ok(resp)
            }
            Err(e) => {
                self.rollback(w);
                Err(e)
            }
        }
    }

    pub(super) fn put_in(
        &mut self,
        w: &mut Write,
        p: &PutRequest,
    ) -> Result<PutResponse, EtcdError> {
        let prev = self.get(&p.key, w.read_rev());
        if (p.ignore_value || p.ignore_lease) && prev.is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        let value = match (&prev, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        let rev = w.write_rev();
        let (create_revision, version) = match &prev {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (rev, 1),
        };
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision,
            mod_revision: rev,
            version,
            value,
            lease,
        };
        self.record(w, p.key.clone(), Some(kv));
        Ok(PutResponse {
            header: header(rev),
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    /// A DeleteRange request.
    pub fn delete_range(
        &mut self,
        d: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        let mut w = Write {
            begin: self.rev,
            subs: 0,
        };
        let resp = self.delete_in(&mut w, d);
        self.finish(w);
        Ok(resp)
    }

    pub(super) fn delete_in(
        &mut self,
        w: &mut Write,
        d: &DeleteRangeRequest,
    ) -> DeleteRangeResponse {
        let live = self.in_range_at(&d.key, &d.range_end, w.read_rev());
        for kv in &live {
            self.record(w, kv.key.clone(), None);
        }
        DeleteRangeResponse {
            header: header(w.read_rev()),
            deleted: live.len() as i64,
            prev_kvs: if d.prev_kv { live } else { Vec::new() },
        }
    }

    /// A Compact request.
    pub fn compact(&mut self, rev: i64) -> Result<CompactionResponse, EtcdError> {
        if rev <= self.compact {
            return Err(EtcdError::Compacted);
        }
        if rev > self.rev {
            return Err(EtcdError::FutureRev);
        }
        self.compact = rev;
        Ok(CompactionResponse {
            header: header(self.rev),
        })
    }
}
