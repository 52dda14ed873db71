//! What the engine tells a person: one line per thing that happened, in the original's
//! vocabulary (`sent`, `trig`, `DONE`, `jump`, `exit`). Formatting to text and colour is
//! the console's job; the engine fills the fields.

use magi_proto::Object;
use serde::Serialize;
use serde_json::Value;

/// The kind of a display line, as the original's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tag {
    /// An event was sent.
    #[serde(rename = "sent")]
    Sent,
    /// A wait completed.
    #[serde(rename = "trig")]
    Trig,
    /// A stream finished.
    #[serde(rename = "DONE")]
    Done,
    /// A stream jumped to a target.
    #[serde(rename = "jump")]
    Jump,
    /// The run is stopping (a failure, an interrupt, a lost node).
    #[serde(rename = "exit")]
    Exit,
    /// Something a person should know that does not stop the run.
    #[serde(rename = "warn")]
    Warn,
    /// What a stream waits for (shown on the first Ctrl-C).
    #[serde(rename = "wait")]
    Wait,
}

impl Tag {
    /// The tag as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Sent => "sent",
            Tag::Trig => "trig",
            Tag::Done => "DONE",
            Tag::Jump => "jump",
            Tag::Exit => "exit",
            Tag::Warn => "warn",
            Tag::Wait => "wait",
        }
    }
}

/// One display line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// Engine time in ms since the run started.
    pub at_ms: u64,
    /// The stream's name, or `unknown` for lines about the run as a whole.
    pub stream: String,
    /// What happened.
    pub tag: Tag,
    /// The text after the time, as the original printed it.
    pub text: String,
}

/// The original's rendering of an event's arguments: the list of values, on one line,
/// cut to 20 characters; `None` when there are none (`startServer(None)`).
pub fn args_repr(args: &Object) -> String {
    if args.is_empty() {
        return "None".to_string();
    }
    let values: Vec<&Value> = args.values().collect();
    let text = serde_json::to_string(&values).unwrap_or_default();
    if text.chars().count() > 20 {
        let cut: String = text.chars().take(20).collect();
        format!("{cut} ... ")
    } else {
        text
    }
}

/// A mapping rendered compactly for a line (`{"result":-1}`).
pub fn object_repr(args: &Object) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

/// Milliseconds as a person reads them: `60 s`, `1.5 s`, `250 ms`.
pub fn duration_repr(ms: u64) -> String {
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_print_as_the_original_did() {
        assert_eq!(args_repr(&Object::new()), "None");
        assert_eq!(
            args_repr(json!({"stepsize": 50000}).as_object().unwrap()),
            "[50000]"
        );
        assert_eq!(
            args_repr(
                json!({"a": "a very long string value"})
                    .as_object()
                    .unwrap()
            ),
            "[\"a very long string ... "
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_repr(60000), "60 s");
        assert_eq!(duration_repr(1600), "1.6 s");
        assert_eq!(duration_repr(250), "250 ms");
    }
}
