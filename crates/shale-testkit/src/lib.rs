//! shale-testkit
pub mod model;
pub mod process;
