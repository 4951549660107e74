//! shale-machine
