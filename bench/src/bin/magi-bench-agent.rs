//! The benchmark's agent: the smallest program that speaks the agent protocol
//! (`docs/agent-protocol.md`). It answers `start` with `ready`, every `call` with a
//! `return` of `true`, and exits on `stop` or end of input. It is synchronous and uses
//! only std and serde_json, so a thousand of them stay light.

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut out = stdout.lock();
    let mut line = String::new();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            let _ = writeln!(std::io::stderr(), "not JSON: {}", line.trim_end());
            continue;
        };
        let reply = match msg.get("kind").and_then(|k| k.as_str()) {
            Some("start") => serde_json::json!({"kind": "ready"}),
            Some("call") => serde_json::json!({"kind": "return", "id": msg["id"], "value": true}),
            Some("stop") => return,
            _ => continue,
        };
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
