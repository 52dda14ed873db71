//! The agent process of the `http_client` module (web traffic generator); see [`magi_agents::http_client`].

fn main() {
    magi_agents::runtime::main::<magi_agents::http_client::HttpClientAgent>()
}
