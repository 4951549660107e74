//! Operation generators shared by the scenarios: apiserver-shaped object churn
//! ([`ChurnGen`]) and LISTs ([`ListGen`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use shale_api::etcdserverpb::kv_client::KvClient;
use tonic::transport::Channel;
use tonic::Status;

use crate::kube::{delete_txn, list, put_txn, write, ListKind, Slots, WriteOutcome};
use crate::objects::{key, Kind, ObjectTemplate};
use crate::phase::{OpGen, Outcome};

/// Creates, guarded updates and deletes of objects in [`Slots`], mixed by percentage.
pub struct ChurnGen {
    pub kind: Kind,
    pub namespaces: u64,
    pub slots: Arc<Slots>,
    pub tpl: ObjectTemplate,
    /// Percent of updates / creates; the rest are deletes.
    pub update_pct: u32,
    pub create_pct: u32,
}

#[derive(Clone, Copy)]
enum Action {
    Update,
    Create,
    Delete,
}

impl ChurnGen {
    pub fn new(
        kind: Kind,
        namespaces: u64,
        slots: Arc<Slots>,
        size: usize,
        mix: (u32, u32),
    ) -> Self {
        Self {
            kind,
            namespaces,
            slots,
            tpl: ObjectTemplate::new(kind, b"churn", size),
            update_pct: mix.0,
            create_pct: mix.1,
        }
    }
}

impl OpGen for ChurnGen {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        rng: &mut StdRng,
        seq: u64,
    ) -> Result<Outcome, Status> {
        let roll = rng.random_range(0..100);
        let mut action = if roll < self.update_pct {
            Action::Update
        } else if roll < self.update_pct + self.create_pct {
            Action::Create
        } else {
            Action::Delete
        };
        let want_present = !matches!(action, Action::Create);
        let claimed = match self.slots.claim(rng, Some(want_present)) {
            Some(c) => Some(c),
            None => {
                action = Action::Update;
                self.slots.claim(rng, Some(true))
            }
        };
        let Some((slot, rev)) = claimed else {
            return Ok(Outcome {
                skipped: true,
                ..Default::default()
            });
        };
        let k = key(self.kind, slot as u64, self.namespaces);
        let txn = match action {
            Action::Delete => delete_txn(k, rev),
            Action::Update | Action::Create => put_txn(k, self.tpl.render(seq), rev, 0),
        };
        match write(kv, txn).await {
            Ok(WriteOutcome::Done(new)) => {
                self.slots.release(
                    slot,
                    if matches!(action, Action::Delete) {
                        0
                    } else {
                        new
                    },
                );
                Ok(Outcome {
                    written: Some(new),
                    ..Default::default()
                })
            }
            Ok(WriteOutcome::Conflict(cur)) => {
                self.slots.release(slot, cur);
                Ok(Outcome {
                    conflict: true,
                    ..Default::default()
                })
            }
            Err(e) => {
                // unknown whether it applied: keep the old revision; a later guarded write
                // on this slot reports a conflict and resynchronizes it
                self.slots.release(slot, rev);
                Err(e)
            }
        }
    }
}

/// One complete LIST per operation; counts objects and bytes returned.
pub struct ListGen {
    pub prefix: Bytes,
    pub kind: ListKind,
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    pub pages: AtomicU64,
}

impl ListGen {
    pub fn new(prefix: Bytes, kind: ListKind) -> Self {
        Self {
            prefix,
            kind,
            objects: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            pages: AtomicU64::new(0),
        }
    }
}

impl OpGen for ListGen {
    async fn op(
        &self,
        kv: &mut KvClient<Channel>,
        _rng: &mut StdRng,
        _seq: u64,
    ) -> Result<Outcome, Status> {
        let r = list(kv, &self.prefix, self.kind).await?;
        self.objects.fetch_add(r.objects, Ordering::Relaxed);
        self.bytes.fetch_add(r.bytes, Ordering::Relaxed);
        self.pages.fetch_add(r.pages, Ordering::Relaxed);
        Ok(Outcome::default())
    }
}
