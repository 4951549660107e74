//! [`WatchLog`]: every write applied under the workload's key prefix, from a watch that starts
//! at revision 1 and survives endpoint failures, for [`crate::linearize::patch_failed_writes`].
//!
//! The watcher keeps `next_rev`, the first revision it has not seen; after any stream error it
//! moves to the next endpoint and re-watches from `next_rev`, so the log stays gap-free and
//! duplicate-free (revisions only grow). Completeness at the end is established with a
//! sentinel: [`WatchLog::finish`] writes a unique value under the prefix, through any endpoint
//! that answers, and waits until the watch has passed that write's revision. A compacted
//! start revision, or a deadline passed, leaves the log marked incomplete (with the reason),
//! and the workload then returns the unpatched history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use shale_api::etcdserverpb::kv_client::KvClient;
use shale_api::etcdserverpb::watch_client::WatchClient;
use shale_api::etcdserverpb::{watch_request, PutRequest, WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::diff::prefix_end;
use crate::linearize::AppliedWrite;

#[derive(Default)]
struct State {
    writes: Vec<AppliedWrite>,
    next_rev: i64,
    error: Option<String>,
}

/// The shared log; the watcher task appends, [`WatchLog::finish`] reads.
#[derive(Clone)]
pub(super) struct WatchLog {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    prefix: Bytes,
}

impl WatchLog {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                next_rev: 1,
                ..State::default()
            })),
            stop: Arc::new(AtomicBool::new(false)),
            prefix: Bytes::from(prefix.as_bytes().to_vec()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watch until stopped, rotating endpoints on errors.
    pub(super) async fn run(self, channels: Vec<Channel>, backoff: Duration) {
        let mut endpoint = 0;
        while !self.stop.load(Ordering::SeqCst) && self.lock().error.is_none() {
            let _ = self.watch_once(channels[endpoint].clone()).await;
            endpoint = (endpoint + 1) % channels.len();
            sleep(backoff).await;
        }
    }

    /// One watch stream, until it fails or the log is stopped.
    async fn watch_once(&self, channel: Channel) -> Result<(), tonic::Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: self.prefix.clone(),
                    range_end: prefix_end(&self.prefix),
                    start_revision: self.lock().next_rev,
                    ..Default::default()
                },
            )),
        };
        let _ = tx.send(create);
        let mut stream = WatchClient::new(channel)
            .watch(UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        while !self.stop.load(Ordering::SeqCst) {
            // wake up now and then to notice the stop flag
            let msg = match timeout(Duration::from_millis(200), stream.message()).await {
                Err(_) => continue,
                Ok(m) => m?,
            };
            let Some(resp) = msg else {
                return Ok(());
            };
            let mut st = self.lock();
            if resp.compact_revision > 0 {
                st.error = Some(format!(
                    "watch start revision {} compacted (at {})",
                    st.next_rev, resp.compact_revision
                ));
                return Ok(());
            }
            for ev in resp.events {
                let Some(kv) = ev.kv else { continue };
                if kv.mod_revision < st.next_rev {
                    continue;
                }
                // event type 0 = PUT, 1 = DELETE
                let value = (ev.r#type == 0).then(|| kv.value.to_vec());
                st.writes.push(AppliedWrite {
                    key: kv.key.to_vec(),
                    value,
                    revision: kv.mod_revision,
                });
                st.next_rev = kv.mod_revision + 1;
            }
        }
        drop(tx);
        Ok(())
    }

    /// Write the sentinel, wait until the watch has seen it, stop the watcher; the complete
    /// log, or why it is not.
    pub(super) async fn finish(
        &self,
        channels: &[Channel],
        deadline: Duration,
    ) -> Result<Vec<AppliedWrite>, String> {
        let give_up = Instant::now() + deadline;
        let mut key = self.prefix.to_vec();
        key.extend_from_slice(b"~end");
        let value = format!("end-{:?}", std::time::SystemTime::now());
        let mut endpoint = 0;
        let revision = loop {
            let mut kv = KvClient::new(channels[endpoint].clone());
            let put = kv.put(PutRequest {
                key: key.clone().into(),
                value: value.clone().into_bytes().into(),
                ..Default::default()
            });
            if let Ok(Ok(r)) = timeout(Duration::from_secs(2), put).await {
                if let Some(h) = r.into_inner().header {
                    break h.revision;
                }
            }
            if Instant::now() >= give_up {
                self.stop.store(true, Ordering::SeqCst);
                return Err("no endpoint accepted the sentinel write".into());
            }
            endpoint = (endpoint + 1) % channels.len();
            sleep(Duration::from_millis(100)).await;
        };
        loop {
            {
                let st = self.lock();
                if let Some(e) = &st.error {
                    self.stop.store(true, Ordering::SeqCst);
                    return Err(e.clone());
                }
                if st.next_rev > revision {
                    self.stop.store(true, Ordering::SeqCst);
                    return Ok(st.writes.clone());
                }
            }
            if Instant::now() >= give_up {
                self.stop.store(true, Ordering::SeqCst);
                return Err(format!(
                    "the watch did not reach the sentinel revision {revision} in time"
                ));
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
}
