//! S3's limits and this tool's request defaults: the numbers every layer checks against, kept in
//! one leaf so that config, the uploader and the policy printer agree. No logic.

use std::time::Duration;

pub const MIB: u64 = 1 << 20;
/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;
/// S3's part-count limit.
pub const S3_MAX_PARTS: u32 = 10_000;
/// `--request-timeout`'s default: the per-attempt limit for a request without a body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
