//! # magi-aal: the Agent Activation Language
//!
//! Raw YAML with spans is turned into a validated [`Procedure`] in one place.
pub mod procedure;
pub use procedure::*;
