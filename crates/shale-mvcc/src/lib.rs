//! shale-mvcc
