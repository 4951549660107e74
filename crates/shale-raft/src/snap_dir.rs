//! [`SnapDir`]: the files of `<data-dir>/member/snap/`.
//!
//! # Model: the state store is the snapshot
//!
//! The state machine's store is durable on its own (every applied batch carries the Raft
//! state it covers), so a Raft snapshot does not need a copy of the data, only a durable
//! point: "everything up to log id X is in the store and flushed". That is what etcd does
//! with its backend. A snapshot here is therefore two different things:
//!
//! - **A point** (`<term>-<index>.meta`): written each time openraft builds a snapshot. It
//!   costs one engine flush; the Raft log up to the point (minus the catch-up entries) is then
//!   purged. Only the newest point is kept.
//! - **A copy** (a dump of the whole store), made only when a peer needs one: a follower
//!   behind the purged log or a new member. The copy is written to `sending.tmp`, opened, and
//!   unlinked at once, so it takes disk space only while it is being sent and a crash leaves
//!   nothing behind. It is taken at the state machine's *current* applied log id, which may be
//!   past the newest point; its metadata says so, and a follower that installs it is then at
//!   that log id. Copying holds the machine's apply lock (writes wait) for its duration.
//!
//! A snapshot received from the leader is installed from `receiving.tmp` into the store,
//! then that file is deleted and the point recorded: after the install the store holds the
//! data.
//!
//! Files of older versions (`<id>.snap` beside `<id>.meta`) are deleted when the next point
//! is recorded; their `.meta` still counts as a point.

use std::path::{Path, PathBuf};

use openraft::storage::SnapshotMeta;
use openraft::BasicNode;

/// Metadata of a snapshot of this state machine.
pub type Meta = SnapshotMeta<u64, BasicNode>;

const META_EXT: &str = "meta";

/// The snapshot directory of one member.
#[derive(Debug, Clone)]
pub struct SnapDir {
    dir: PathBuf,
}

impl SnapDir {
    /// Opens (creating it if needed) `dir` and removes leftovers of interrupted work.
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // `building.tmp`: a copy interrupted by a crash in versions that wrote one per point.
        for name in ["sending.tmp", "building.tmp"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Where a snapshot being received from the leader is written.
    pub fn receiving(&self) -> PathBuf {
        self.dir.join("receiving.tmp")
    }

    /// Where a copy for a peer is written (then unlinked while open).
    pub fn sending(&self) -> PathBuf {
        self.dir.join("sending.tmp")
    }

    /// An empty file handed to openraft where it wants data it will not read (the point
    /// returned by a build).
    pub fn empty(&self) -> std::io::Result<std::fs::File> {
        let p = self.dir.join("empty");
        std::fs::File::create(&p)?;
        std::fs::File::open(&p)
    }

    /// The newest recorded point, if any. An unreadable `.meta` file is skipped.
    pub fn latest(&self) -> Option<Meta> {
        let mut best: Option<Meta> = None;
        for e in std::fs::read_dir(&self.dir).ok()?.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some(META_EXT) {
                continue;
            }
            let Ok(b) = std::fs::read(&p) else { continue };
            let Ok(meta) = bincode::deserialize::<Meta>(&b) else {
                tracing::warn!(file = %p.display(), "ignoring an undecodable snapshot point");
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|m| m.last_log_id < meta.last_log_id)
            {
                best = Some(meta);
            }
        }
        best
    }

    /// Records `meta` as the newest point (atomically: temp file, fsync, rename, directory
    /// fsync) and deletes every other point and every old-format data file.
    pub fn record(&self, meta: &Meta) -> std::io::Result<()> {
        let bytes = bincode::serialize(meta).map_err(std::io::Error::other)?;
        let name = format!("{}.{META_EXT}", meta.snapshot_id);
        let tmp = self.dir.join(format!("{name}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(&name))?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            let stale_meta = n.ends_with(&format!(".{META_EXT}")) && n != name;
            if stale_meta || n.ends_with(".snap") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// The snapshot id of a point or copy at `last` (`<term>-<index>`, zero-padded so ids sort
/// like log ids).
pub fn snapshot_id(last: Option<&crate::app::LogId>) -> String {
    match last {
        Some(l) => format!("{:020}-{:020}", l.leader_id.term, l.index),
        None => format!("{:020}-{:020}", 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn meta(term: u64, index: u64) -> Meta {
        let l = LogId::new(CommittedLeaderId::new(term, 1), index);
        Meta {
            last_log_id: Some(l),
            last_membership: StoredMembership::default(),
            snapshot_id: snapshot_id(Some(&l)),
        }
    }

    #[test]
    fn the_newest_point_is_kept_and_old_data_files_go() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = SnapDir::open(d.path().to_path_buf()).expect("open");
        assert!(s.latest().is_none());
        std::fs::write(
            d.path()
                .join("00000000000000000001-00000000000000000005.snap"),
            b"x",
        )
        .expect("old data");
        s.record(&meta(1, 10)).expect("record");
        s.record(&meta(2, 20)).expect("record");
        assert_eq!(s.latest(), Some(meta(2, 20)));
        let names: Vec<String> = std::fs::read_dir(d.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec![format!("{}.meta", meta(2, 20).snapshot_id)]);
    }

    #[test]
    fn a_damaged_point_is_skipped() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = SnapDir::open(d.path().to_path_buf()).expect("open");
        s.record(&meta(1, 10)).expect("record");
        std::fs::write(d.path().join("zzz.meta"), b"\xff\xff").expect("junk");
        assert_eq!(s.latest(), Some(meta(1, 10)));
    }
}
