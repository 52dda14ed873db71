//! magi-node
