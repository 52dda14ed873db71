//! magi-node
pub mod archive;
pub mod library;
pub mod manifest;
pub mod process;
