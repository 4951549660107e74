//! shale-testkit
