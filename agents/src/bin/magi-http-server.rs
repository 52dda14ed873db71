//! The agent process of the `apache` module (HTTP server); see [`magi_agents::http_server`].

fn main() {
    magi_agents::runtime::main::<magi_agents::http_server::HttpServerAgent>()
}
