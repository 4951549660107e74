//! openraft's storage test suite against the production pair: the durable [`LogStore`] and
//! Shale's state machine ([`StateMachineStore`] over `shale_machine::Machine`), once with each
//! state engine (sled and the log-structured `LogEngine`).

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use shale_machine::{Machine, MachineConfig};
use shale_raft::state_machine::StateMachineStore;
use shale_raft::{LogStore, LogStoreOptions, TypeConfig};
use shale_storage::{Engine, LogEngine, SledEngine};

/// Builds the stores with the log-structured state engine (`true`) or sled.
struct Builder(bool);

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, StateMachineStore, tempfile::TempDir>
    for Builder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<TypeConfig>, StateMachineStore), StorageError<u64>>
    {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
        let log = LogStore::open(&dir.path().join("raft"), LogStoreOptions::default())
            .map_err(|e| StorageIOError::write(&e))?;
        let engine: Arc<dyn Engine> = if self.0 {
            Arc::new(
                LogEngine::open(&dir.path().join("state.log"), Default::default())
                    .map_err(|e| StorageIOError::write(&e))?,
            )
        } else {
            Arc::new(
                SledEngine::open(&dir.path().join("state"), 8 << 20)
                    .map_err(|e| StorageIOError::write(&e))?,
            )
        };
        let machine = Arc::new(
            Machine::open(engine, MachineConfig::default())
                .map_err(|e| StorageIOError::write(&e))?,
        );
        let sm = StateMachineStore::new(machine, dir.path().join("snap"))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_against_shale_stores() {
    Suite::test_all(Builder(false)).expect("openraft storage suite");
}

#[test]
fn openraft_storage_suite_against_shale_stores_log_engine() {
    Suite::test_all(Builder(true)).expect("openraft storage suite");
}
