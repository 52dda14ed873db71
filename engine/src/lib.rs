//! magi-engine
