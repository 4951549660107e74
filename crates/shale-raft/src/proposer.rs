//! [`Proposer`]: batches client requests into Raft log entries.
//!
//! openraft appends and fsyncs one log write at a time. Handing it one entry per request
//! would cost one fsync per write; instead requests queue here, and whenever a proposal slot
//! is free the proposer takes everything queued (up to a count and byte budget) as ONE
//! entry. While an entry is being made durable and applied, the next batch accumulates, so
//! the batch size adapts to the load: one request when idle, hundreds under pressure. This
//! is etcd's "one WAL fsync covers every pending proposal", at the log-entry level.
//!
//! Invariants: requests keep their arrival order inside a batch; every request of a batch
//! gets its own revision when applied; every caller gets exactly one answer (the machine's
//! response, or the error that ended the whole batch).

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use shale_api::error::EtcdError;
use shale_api::shalepb::{InternalBatch, InternalBatchResponse, InternalRequest, InternalResponse};
use tokio::sync::{mpsc, oneshot, Semaphore};

use std::time::Duration;

use shale_api::shalepb::{forward_request, forward_response};

use crate::app::{Command, Raft};
use crate::node::ProposalHold;
use crate::peer::{Forwarder, Route};

/// Proposals in flight at once (one being made durable, one queued behind it in openraft).
const IN_FLIGHT: usize = 2;
/// Largest batch, in requests and in encoded bytes.
const MAX_BATCH: usize = 4096;
const MAX_BATCH_BYTES: usize = 8 << 20;

type Answer = Result<InternalResponse, EtcdError>;

struct Proposal {
    req: InternalRequest,
    tx: oneshot::Sender<Answer>,
}

/// The handle callers propose through.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Proposal>,
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(
        raft: Raft,
        forwarder: Forwarder,
        held: Arc<ProposalHold>,
        timeout: Duration,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(
            Sender {
                raft,
                forwarder,
                held,
                timeout,
            },
            rx,
        ));
        Self { tx }
    }

    /// Queues `req`; resolves with its answer once its batch was applied.
    pub async fn propose(&self, req: InternalRequest) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Proposal { req, tx })
            .map_err(|_| EtcdError::Stopped)?;
        rx.await.unwrap_or(Err(EtcdError::Stopped))
    }
}

pub(crate) fn map_write_err(
    e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            if f.leader_id.is_some() {
                EtcdError::NotLeader
            } else {
                EtcdError::NoLeader
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => EtcdError::NotCapable,
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}

/// Maps the error of a `client_write` made while this member led.
///
/// openraft answers `ForwardToLeader` both when it refused the entry (leadership already
/// gone) and when it appended the entry and a new leader's log later truncated it. The two
/// cannot be told apart, and an appended entry must never be proposed again (the client may
/// have given up on it long ago), so both are `leader changed`: the write was not applied
/// and is not retried behind the client's back.
pub(crate) fn map_appended_write_err(
    e: RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::LeaderChanged,
        e => map_write_err(e),
    }
}

/// Sends one batch where the leader is.
#[derive(Clone)]
struct Sender {
    raft: Raft,
    forwarder: Forwarder,
    held: Arc<ProposalHold>,
    timeout: Duration,
}

impl Sender {
    async fn send(&self, batch: InternalBatch) -> Result<InternalBatchResponse, EtcdError> {
        self.held.pass().await;
        let fwd = |batch| forward_request::Request::Propose(batch);
        let answer = |r| match r {
            forward_response::Response::Propose(r) => Ok(r),
            _ => Err(EtcdError::Corrupt),
        };
        // On the leader the batch is written without the copy a forward would need.
        if !matches!(self.forwarder.route(self.timeout).await?, Route::Local) {
            if let Some(r) = self
                .forwarder
                .to_leader(fwd(batch.clone()), self.timeout)
                .await?
            {
                return answer(r);
            }
        }
        match self.raft.client_write(Command::new(batch)).await {
            Ok(resp) => Ok(resp.data.0),
            Err(e) => Err(map_appended_write_err(e)),
        }
    }
}

async fn run(sender: Sender, mut rx: mpsc::UnboundedReceiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: meanwhile more requests queue and join this batch.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = prost::Message::encoded_len(&first.req);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += prost::Message::encoded_len(&p.req);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let sender = sender.clone();
        tokio::spawn(async move {
            let (reqs, txs): (Vec<InternalRequest>, Vec<oneshot::Sender<Answer>>) =
                batch.into_iter().map(|p| (p.req, p.tx)).unzip();
            let n = reqs.len();
            match sender.send(InternalBatch { requests: reqs }).await {
                Ok(resp) if resp.responses.len() == n => {
                    for (tx, r) in txs.into_iter().zip(resp.responses) {
                        let _ = tx.send(Ok(r));
                    }
                }
                Ok(resp) => {
                    tracing::error!(
                        sent = n,
                        answered = resp.responses.len(),
                        "batch answered with the wrong number of responses"
                    );
                    for tx in txs {
                        let _ = tx.send(Err(EtcdError::Corrupt));
                    }
                }
                Err(e) => {
                    for tx in txs {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            drop(permit);
        });
    }
}
