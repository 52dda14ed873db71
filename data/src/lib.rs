//! magi-data
