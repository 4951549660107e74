//! shale-testkit
pub mod diff;
pub mod linearize;
pub mod mesh;
pub mod model;
pub mod process;
pub mod proxy;
pub mod workload;
