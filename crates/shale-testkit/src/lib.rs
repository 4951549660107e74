//! shale-testkit
pub mod diff;
pub mod model;
pub mod process;
