//! One module per subcommand, wiring the parts together.

pub mod backup;
pub mod list;
pub mod prune;
