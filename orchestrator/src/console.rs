//! The console: the original's lines (`stream <name> : <tag> : (HH:MM:SS) <text>`), with
//! colour only on a terminal, or one JSON record per line with `--json`; and the live
//! "waiting for" line shown on a terminal.

use std::io::{IsTerminal, Write};

use magi_engine::display::{Line, Tag};
use magi_engine::WaitView;

/// How lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The original's text lines.
    Text {
        /// ANSI colours.
        color: bool,
        /// A live status line (only on a terminal).
        live: bool,
    },
    /// One JSON object per line.
    Json,
}

impl Mode {
    /// Text with colour and the live line when stdout is a terminal and `NO_COLOR` is unset,
    /// unless `no_color`; JSON when asked.
    pub fn detect(json: bool, no_color: bool) -> Mode {
        if json {
            return Mode::Json;
        }
        let tty = std::io::stdout().is_terminal();
        let color = magi_proto::color_allowed(tty, no_color);
        Mode::Text { color, live: tty }
    }
}

/// Prints lines; remembers whether a live line must be cleared first.
pub struct Console {
    mode: Mode,
    live_shown: bool,
}

const BLUE: u8 = 34;
const GREEN: u8 = 32;
const YELLOW: u8 = 33;
const RED: u8 = 31;

fn paint(color: bool, code: u8, text: &str) -> String {
    if color {
        format!("\x1b[{code};1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub use magi_proto::some_names;

/// The stream name as the original printed it: 14 wide, long names cut to 11 + `...`.
pub fn stream_name(name: &str) -> String {
    if name.chars().count() > 14 {
        format!("{}...", name.chars().take(11).collect::<String>())
    } else {
        format!("{name:<14}")
    }
}

fn local_time(epoch: f64) -> Option<libc::tm> {
    let secs = epoch as libc::time_t;
    // SAFETY: localtime_r only writes into the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    ok.then_some(tm)
}

/// Local wall-clock time as `HH:MM:SS`.
pub fn clock(epoch: f64) -> String {
    match local_time(epoch) {
        Some(tm) => format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
        None => "??:??:??".into(),
    }
}

/// Local date and time as `YYYY-MM-DD HH:MM:SS` (run listings).
pub fn date_time(epoch: f64) -> String {
    match local_time(epoch) {
        Some(tm) => format!(
            "{:04}-{:02}-{:02} {}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            clock(epoch)
        ),
        None => "????-??-?? ??:??:??".into(),
    }
}

/// Formats one line in the original's layout.
pub fn format_line(line: &Line, epoch: f64, color: bool) -> String {
    let (code, name_code) = match line.tag {
        Tag::Sent => (BLUE, None),
        Tag::Trig => (GREEN, None),
        Tag::Done => (GREEN, Some(GREEN)),
        Tag::Jump => (YELLOW, Some(GREEN)),
        Tag::Exit => (RED, None),
        Tag::Warn => (YELLOW, None),
        Tag::Wait => (RED, None),
    };
    let name = format!("stream {}", stream_name(&line.stream));
    let name = match name_code {
        Some(c) => paint(color, c, &name),
        None => name,
    };
    format!(
        "{name} : {} : ({}) {}",
        paint(color, code, line.tag.as_str()),
        clock(epoch),
        line.text
    )
}

impl Console {
    /// A console in the given mode.
    pub fn new(mode: Mode) -> Self {
        Console {
            mode,
            live_shown: false,
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn clear_live(&mut self, out: &mut impl Write) {
        if self.live_shown {
            let _ = write!(out, "\r\x1b[K");
            self.live_shown = false;
        }
    }

    /// Prints an engine line.
    pub fn line(&mut self, line: &Line, epoch: f64) {
        let mut out = std::io::stdout().lock();
        match self.mode {
            Mode::Json => {
                let rec = serde_json::json!({"time": epoch, "stream": line.stream, "tag": line.tag, "text": line.text});
                let _ = writeln!(out, "{rec}");
            }
            Mode::Text { color, .. } => {
                self.clear_live(&mut out);
                let _ = writeln!(out, "{}", format_line(line, epoch, color));
            }
        }
        let _ = out.flush();
    }

    /// Prints a note that is not an engine line (pre-flight, archives, the record).
    pub fn note(&mut self, text: &str) {
        match self.mode {
            Mode::Json => {
                let rec = serde_json::json!({"time": magi_proto::epoch_now(), "note": text});
                println!("{rec}");
            }
            Mode::Text { .. } => {
                let mut err = std::io::stderr().lock();
                let mut out = std::io::stdout().lock();
                self.clear_live(&mut out);
                let _ = out.flush();
                let _ = writeln!(err, "magi: {text}");
            }
        }
    }

    /// Prints the waits as `wait` lines (the first Ctrl-C).
    pub fn waits(&mut self, waits: &[WaitView], epoch: f64) {
        for w in waits {
            for t in &w.triggers {
                let line = Line {
                    at_ms: 0,
                    stream: w.stream.clone(),
                    tag: Tag::Wait,
                    text: t.clone(),
                };
                self.line(&line, epoch);
            }
        }
    }

    /// Refreshes the live line (terminal only): what each stream waits for.
    pub fn live(&mut self, waits: &[WaitView]) {
        let Mode::Text { live: true, color } = self.mode else {
            return;
        };
        let mut text = waits
            .iter()
            .map(|w| format!("{}: {}", w.stream, w.triggers.join(" | ")))
            .collect::<Vec<_>>()
            .join("  ||  ");
        if text.is_empty() {
            return;
        }
        let width = terminal_width().saturating_sub(1).max(20);
        if text.chars().count() > width {
            text = text
                .chars()
                .take(width.saturating_sub(3))
                .collect::<String>()
                + "...";
        }
        let mut out = std::io::stdout().lock();
        // `\r` and erase-line keep it one line; dim only where colour is allowed.
        if color {
            let _ = write!(out, "\r\x1b[K\x1b[2m{text}\x1b[0m");
        } else {
            let _ = write!(out, "\r\x1b[K{text}");
        }
        let _ = out.flush();
        self.live_shown = true;
    }

    /// Clears the live line before the program ends.
    pub fn finish(&mut self) {
        let mut out = std::io::stdout().lock();
        self.clear_live(&mut out);
        let _ = out.flush();
    }
}

fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0
    {
        ws.ws_col as usize
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_padded_and_cut_as_the_original() {
        assert_eq!(stream_name("serverstream"), "serverstream  ");
        assert_eq!(stream_name("initialization"), "initialization");
        assert_eq!(stream_name("groupBuildStream"), "groupBuildS...");
    }

    #[test]
    fn a_line_has_the_original_layout_and_colours_only_when_asked() {
        let line = Line {
            at_ms: 0,
            stream: "serverstream".into(),
            tag: Tag::Sent,
            text: "startServer(None) --> server_group".into(),
        };
        let plain = format_line(&line, 0.0, false);
        assert!(
            plain.starts_with("stream serverstream   : sent : ("),
            "{plain}"
        );
        assert!(plain.ends_with(") startServer(None) --> server_group"));
        assert!(!plain.contains('\x1b'));
        assert!(format_line(&line, 0.0, true).contains("\x1b[34;1msent\x1b[0m"));
    }
}
