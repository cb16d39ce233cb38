//! The operations commands call, each usable by any command: the backup's stream and commit,
//! the key claim, pruning, backup selection, verification and restore. They print progress and
//! warnings through `output` but never a command's result: that is the command's.

pub mod backup;
pub mod claim;
pub mod job;
pub mod pipeline;
pub mod prune;
pub mod restore;
pub mod select;
pub mod verify;
