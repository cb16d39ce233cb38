//! One module per subcommand, wiring the parts together.

pub mod backup;
pub mod check;
pub mod list;
pub mod policy;
pub mod prune;
pub mod restore;
pub mod verify;
