//! The agent process of the `link_up_down` module (links changed during a run on a
//! testbed); see [`magi_agents::link_up_down`].

fn main() {
    magi_agents::runtime::main::<magi_agents::link_up_down::LinkUpDown>()
}
