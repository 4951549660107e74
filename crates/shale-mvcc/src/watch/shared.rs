//! [`SharedEvent`]: one event of a batch, encoded at most twice and shared by every watcher.
//!
//! The hub delivers each committed batch (and the catch-up thread each chunk of history) to
//! many watchers. Each event is protobuf-encoded on first use, once without `prev_kv` and —
//! only if some watcher asked for `prev_kv` — once with it (the plain encoding plus the
//! `prev_kv` field, see [`EncodedEvent::with_prev_kv`]). Watchers with the same settings
//! receive clones of the same [`EncodedEvent`], i.e. the same bytes, by reference count.
//! When the event has no previous state, both variants are the same bytes.

use shale_api::mvccpb::{Event, KeyValue};
use shale_api::watch_wire::EncodedEvent;

pub(crate) struct SharedEvent {
    /// The event without `prev_kv`; watchers filter on it.
    pub ev: Event,
    plain: Option<EncodedEvent>,
    with_prev: Option<EncodedEvent>,
}

impl SharedEvent {
    pub fn new(ev: Event) -> Self {
        Self {
            ev,
            plain: None,
            with_prev: None,
        }
    }

    /// The event's main revision.
    pub fn rev(&self) -> i64 {
        self.ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
    }

    /// The encoding without `prev_kv`.
    pub fn plain(&mut self) -> EncodedEvent {
        let ev = &self.ev;
        self.plain
            .get_or_insert_with(|| EncodedEvent::encode(ev))
            .clone()
    }

    /// The encoding with `prev_kv`, if it was already made.
    pub fn cached_with_prev(&self) -> Option<EncodedEvent> {
        self.with_prev.clone()
    }

    /// The encoding with `prev_kv` = `prev`; the first call decides `prev` for every later one.
    pub fn with_prev(&mut self, prev: Option<&KeyValue>) -> EncodedEvent {
        if let Some(e) = &self.with_prev {
            return e.clone();
        }
        let plain = self.plain();
        let e = match prev {
            Some(p) => plain.with_prev_kv(p),
            None => plain,
        };
        self.with_prev = Some(e.clone());
        e
    }
}
