//! The agent process of the `pktcounters` module (per-peer traffic counters); see [`magi_agents::pktcounters`].

fn main() {
    magi_agents::runtime::main::<magi_agents::pktcounters::PktCountersAgent>()
}
