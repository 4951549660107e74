//! shale-testkit
pub mod model;
