//! The data source: connection strings, the preflight connection, and the pg_dump child.

pub mod conninfo;
pub mod pg_dump;
pub mod preflight;
pub mod tls;
