//! The data source: connection strings, the preflight connection, and the pg_dump child.

pub mod complete;
pub mod conninfo;
pub mod pg_dump;
pub mod pg_dump_args;
pub mod preflight;
pub mod tls;
