//! One bidi watch stream whose responses a background task collects.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

/// One bidi watch stream; responses are collected by a background task.
pub(super) struct Stream {
    pub(super) req: mpsc::UnboundedSender<WatchRequest>,
    pub(super) resp: mpsc::UnboundedReceiver<std::result::Result<WatchResponse, tonic::Status>>,
    pub(super) got: Vec<WatchResponse>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Stream {
    pub(super) fn open(client: &WatchClient<Channel>, first: WatchRequest) -> Self {
        let (req, req_rx) = mpsc::unbounded_channel();
        // queued before the call: grpc-go sends response headers only with the first message
        req.send(first).expect("receiver alive");
        let (resp_tx, resp) = mpsc::unbounded_channel();
        let mut c = client.clone();
        let task = tokio::spawn(async move {
            match c.watch(UnboundedReceiverStream::new(req_rx)).await {
                Ok(r) => {
                    let mut s = r.into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(m)) => {
                                if resp_tx.send(Ok(m)).is_err() {
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ = resp_tx.send(Err(e));
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = resp_tx.send(Err(e));
                }
            }
        });
        Self {
            req,
            resp,
            got: Vec::new(),
            task,
        }
    }

    pub(super) fn send(&self, r: WatchRequest) -> Result<()> {
        self.req
            .send(r)
            .map_err(|_| anyhow!("watch stream task ended"))
    }

    pub(super) fn drain(&mut self) -> Result<()> {
        while let Ok(m) = self.resp.try_recv() {
            self.got
                .push(m.map_err(|s| anyhow!("watch stream failed: {s:?}"))?);
        }
        Ok(())
    }

    /// Collect responses until `pred(all responses so far)` holds.
    pub(super) async fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[WatchResponse]) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain()?;
            if pred(&self.got) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.resp.recv()).await {
                Ok(Some(m)) => self
                    .got
                    .push(m.map_err(|s| anyhow!("watch stream failed: {s:?}"))?),
                Ok(None) => bail!("watch stream closed while waiting for {what}"),
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for {what}; got {} responses, last: {:?}",
                    self.got.len(),
                    self.got.last()
                ),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn max_rev(got: &[WatchResponse], watch_id: i64) -> i64 {
    got.iter()
        .filter(|r| r.watch_id == watch_id)
        .flat_map(|r| r.events.iter())
        .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
        .max()
        .unwrap_or(0)
}
