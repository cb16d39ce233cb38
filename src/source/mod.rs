//! The database side: connection strings, the preflight connection, the pg_dump child, and
//! the one child-process type every client tool runs under (`process`).

pub mod complete;
pub mod conninfo;
pub mod pg_dump;
pub mod pg_dump_args;
pub mod preflight;
pub mod process;
pub mod tls;
