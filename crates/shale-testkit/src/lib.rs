//! shale-testkit
pub mod diff;
pub mod linearize;
pub mod model;
pub mod process;
