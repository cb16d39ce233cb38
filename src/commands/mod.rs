//! One module per subcommand, wiring the parts together.

pub mod backup;
