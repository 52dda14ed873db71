//! magi-agents
