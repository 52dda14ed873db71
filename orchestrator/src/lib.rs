//! # magi: the orchestrator and the user's commands
pub mod cli;
