//! The agent process of the `flooder` module (packet floods); see [`magi_agents::flooder`].

fn main() {
    magi_agents::runtime::main::<magi_agents::flooder::FlooderAgent>()
}
