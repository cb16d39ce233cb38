//! pg-s3-backup: stream `pg_dump` through parallel gzip or zstd (and, when asked, age
//! encryption) into an S3 multipart upload.
//! The pipeline is source (`source`) -> transform (`compress`, `crypt`) -> sink (`upload`); commands wire
//! the parts together, and `layout` owns the object keys.

pub mod action;
pub mod auth;
pub mod backmon;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compress;
pub mod config;
pub mod crypt;
pub mod download;
pub mod error;
pub mod iam;
pub mod layout;
pub mod limits;
pub mod ops;
pub mod output;
pub mod ping;
pub mod progress;
pub mod record;
pub mod report;
pub mod retention;
pub mod s3;
pub mod signals;
pub mod source;
pub mod sql_script;
pub mod store;
pub mod target;
pub mod upload;
