//! One integration-test binary with a module per area; see `support` for the harness.
//! Run through `scripts/test`, which starts PostgreSQL, moto and s3s-fs.

mod support;

mod action;
mod auth;
mod backup;
mod codecs;
mod commands;
mod connect;
mod container;
mod faults;
mod hostile;
mod layers;
mod parts;
mod pings;
mod restore;
mod retention;
mod server;
mod trust;
