//! shale-server
