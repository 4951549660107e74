//! The same watch streams on both sides, and what the runner expects of them.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use shale_api::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use shale_api::mvccpb::Event;

use super::client::Client;
use super::stream::{max_rev, Stream};

/// What a watcher was created with, and what the runner expects of it.
#[derive(Debug, Clone)]
pub(super) struct WatchSpec {
    pub(super) name: &'static str,
    pub(super) stream: usize,
    pub(super) watch_id: i64,
    pub(super) create: WatchCreateRequest,
    /// All keys: used as the compaction barrier of its stream.
    pub(super) all_keys: bool,
    /// Started below the compacted revision: expect a cancel, no events.
    pub(super) expect_cancel: bool,
    /// Events of revisions above this are expected.
    pub(super) after_rev: i64,
}

/// The same watch streams on the reference (`.0`) and the subject (`.1`).
pub(super) struct Watches {
    pub(super) streams: Vec<(Stream, Stream)>,
    pub(super) specs: Vec<WatchSpec>,
}

fn create_req(c: &WatchCreateRequest) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(c.clone())),
    }
}

/// The parts of a created/canceled response that must match.
fn control_view(r: &WatchResponse) -> String {
    format!(
        "watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} fragment={} header.revision={:?} events={}",
        r.watch_id,
        r.created,
        r.canceled,
        r.compact_revision,
        r.cancel_reason,
        r.fragment,
        r.header.as_ref().map(|h| h.revision),
        r.events.len()
    )
}

impl Watches {
    pub(super) fn new() -> Self {
        Self {
            streams: Vec::new(),
            specs: Vec::new(),
        }
    }

    /// Create a watcher (on a new stream when `stream == streams.len()`) on both sides and
    /// compare the `created` responses.
    pub(super) async fn create(
        &mut self,
        clients: (&Client, &Client),
        stream: usize,
        mut spec: WatchSpec,
    ) -> Result<()> {
        let req = create_req(&spec.create);
        if stream == self.streams.len() {
            self.streams.push((
                Stream::open(&clients.0.watch, req.clone()),
                Stream::open(&clients.1.watch, req),
            ));
        } else {
            self.streams[stream].0.send(req.clone())?;
            self.streams[stream].1.send(req)?;
        }
        let n_created = self.specs.iter().filter(|s| s.stream == stream).count() + 1;
        let (a, b) = &mut self.streams[stream];
        let pred = |got: &[WatchResponse]| got.iter().filter(|r| r.created).count() >= n_created;
        let what = format!("created response of watch {}", spec.name);
        a.wait_for(
            Duration::from_secs(10),
            &format!("{what} (reference)"),
            pred,
        )
        .await?;
        b.wait_for(Duration::from_secs(10), &format!("{what} (subject)"), pred)
            .await?;
        let ca = a
            .got
            .iter()
            .filter(|r| r.created)
            .nth(n_created - 1)
            .unwrap();
        let cb = b
            .got
            .iter()
            .filter(|r| r.created)
            .nth(n_created - 1)
            .unwrap();
        if control_view(ca) != control_view(cb) {
            bail!(
                "watch {}: created responses differ for {:?}\n  reference: {ca:?}\n  subject:   {cb:?}",
                spec.name,
                spec.create
            );
        }
        spec.stream = stream;
        spec.watch_id = ca.watch_id;
        if spec.create.start_revision == 0 {
            spec.after_rev = ca.header.as_ref().map_or(0, |h| h.revision);
        }
        self.specs.push(spec);
        Ok(())
    }

    /// Wait until each stream's all-keys watcher has delivered every revision up to `rev`, on
    /// both sides (see the module docs: keeps etcd's `prev_kv` deterministic).
    pub(super) async fn barrier(&mut self, rev: i64) -> Result<()> {
        for spec in self.specs.iter().filter(|s| s.all_keys) {
            if rev <= spec.after_rev {
                continue;
            }
            let (a, b) = &mut self.streams[spec.stream];
            let id = spec.watch_id;
            let what = format!("watch {} to reach revision {rev}", spec.name);
            let pred = |got: &[WatchResponse]| max_rev(got, id) >= rev;
            a.wait_for(
                Duration::from_secs(15),
                &format!("{what} (reference)"),
                pred,
            )
            .await?;
            b.wait_for(Duration::from_secs(15), &format!("{what} (subject)"), pred)
                .await?;
        }
        Ok(())
    }

    pub(super) fn drain(&mut self) -> Result<()> {
        for (a, b) in &mut self.streams {
            a.drain()?;
            b.drain()?;
        }
        Ok(())
    }

    /// Wait for every watcher to deliver `final_rev` (or its cancel), then compare everything.
    pub(super) async fn finish(&mut self, final_rev: i64) -> Result<usize> {
        let mut events = 0;
        for spec in &self.specs {
            let (a, b) = &mut self.streams[spec.stream];
            let id = spec.watch_id;
            for (side, s) in [("reference", &mut *a), ("subject", &mut *b)] {
                if spec.expect_cancel {
                    s.wait_for(
                        Duration::from_secs(15),
                        &format!("cancel of watch {} ({side})", spec.name),
                        |got| got.iter().any(|r| r.watch_id == id && r.canceled),
                    )
                    .await?;
                } else {
                    s.wait_for(
                        Duration::from_secs(15),
                        &format!("watch {} to reach revision {final_rev} ({side})", spec.name),
                        |got| max_rev(got, id) >= final_rev,
                    )
                    .await?;
                }
            }
        }
        // a moment for anything that should not come (duplicates, events after a cancel)
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.drain()?;
        for spec in &self.specs {
            let (a, b) = &self.streams[spec.stream];
            let id = spec.watch_id;
            let ev = |got: &[WatchResponse]| -> Vec<Event> {
                got.iter()
                    .filter(|r| r.watch_id == id)
                    .flat_map(|r| r.events.iter().cloned())
                    .collect()
            };
            let (ea, eb) = (ev(&a.got), ev(&b.got));
            for (side, got) in [("reference", &a.got), ("subject", &b.got)] {
                check_watch_atomic(got, id)
                    .map_err(|e| anyhow!("watch {} ({side}): {e}", spec.name))?;
            }
            if ea != eb {
                let i = ea
                    .iter()
                    .zip(&eb)
                    .position(|(x, y)| x != y)
                    .unwrap_or(ea.len().min(eb.len()));
                bail!(
                    "watch {} ({:?}): event lists differ at event #{i} (reference has {}, subject {})\n  reference: {:?}\n  subject:   {:?}\n  previous (both): {:?}",
                    spec.name,
                    spec.create,
                    ea.len(),
                    eb.len(),
                    ea.get(i),
                    eb.get(i),
                    i.checked_sub(1).and_then(|j| ea.get(j)),
                );
            }
            events += ea.len();
            let ctl = |got: &[WatchResponse]| -> Vec<String> {
                got.iter()
                    .filter(|r| r.watch_id == id && (r.created || r.canceled))
                    .map(control_view)
                    .collect()
            };
            let (ca, cb) = (ctl(&a.got), ctl(&b.got));
            if ca != cb {
                bail!(
                    "watch {} ({:?}): control responses differ\n  reference: {ca:#?}\n  subject:   {cb:#?}",
                    spec.name,
                    spec.create
                );
            }
        }
        // progress request on the first stream: answered with watch_id -1 at the current revision
        let (a, b) = &mut self.streams[0];
        let progress = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        };
        let mut revs = Vec::new();
        for (side, s) in [("reference", &mut *a), ("subject", &mut *b)] {
            let before = s.got.len();
            s.send(progress.clone())?;
            s.wait_for(
                Duration::from_secs(10),
                &format!("progress response ({side})"),
                |got| got[before..].iter().any(|r| r.watch_id == -1),
            )
            .await?;
            let r = s.got[before..].iter().find(|r| r.watch_id == -1).unwrap();
            revs.push(r.header.as_ref().map(|h| h.revision));
        }
        if revs[0] != revs[1] || revs[0] != Some(final_rev) {
            bail!(
                "progress response revision: reference {:?}, subject {:?}, expected {final_rev}",
                revs[0],
                revs[1]
            );
        }
        Ok(events)
    }
}

/// Events of a watcher: revisions non-decreasing inside a response, and one revision never
/// split across responses.
fn check_watch_atomic(got: &[WatchResponse], watch_id: i64) -> Result<()> {
    let mut last = 0;
    for r in got
        .iter()
        .filter(|r| r.watch_id == watch_id && !r.events.is_empty())
    {
        let revs: Vec<i64> = r
            .events
            .iter()
            .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
            .collect();
        if revs[0] <= last || revs.windows(2).any(|w| w[1] < w[0]) {
            bail!("events out of order or a revision split across responses: previous response ended at {last}, this one has revisions {revs:?}");
        }
        last = *revs.last().unwrap();
    }
    Ok(())
}
