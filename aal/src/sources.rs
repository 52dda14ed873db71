//! Reading AAL files, and joining several into one text as the original did.
//!
//! The original concatenated the files' text before parsing, so an anchor defined in file 1
//! can be used in file 2, and a top-level key repeated in a later file replaces the earlier
//! one. We keep that (the replacement is reported), but add the missing line break that made
//! the original fail on a file without a trailing newline, and map every line of the joined
//! text back to its file and line.

use crate::procedure::{SourceFile, Span};
use std::fmt;
use std::path::{Path, PathBuf};

/// A file that could not be read.
#[derive(Debug)]
pub struct ReadError {
    /// The path as given.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub reason: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read `{}`: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for ReadError {}

/// Reads one AAL file (UTF-8; a leading byte-order mark is dropped).
pub fn read_source(path: &Path) -> Result<SourceFile, ReadError> {
    let error = |reason: String| ReadError {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(error("it is a directory".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        error(format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok(source(path.display().to_string(), text))
}

/// Reads every file, in order; the errors of all unreadable files are returned together.
pub fn read_sources<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<SourceFile>, Vec<ReadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match read_source(path.as_ref()) {
            Ok(f) => files.push(f),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// A source file from a name and text (a leading byte-order mark is dropped).
pub fn source(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
    let mut text = text.into();
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    SourceFile {
        path: path.into(),
        text,
    }
}

/// The files joined into one text, with the way back from a joined line to a file line.
pub(crate) struct Joined {
    /// The joined text.
    pub text: String,
    /// For each file, the 1-based joined line its first line is.
    starts: Vec<u32>,
}

impl Joined {
    /// Joins the files' texts, adding a line break after a file that lacks one.
    pub fn new(files: &[SourceFile]) -> Self {
        let mut text = String::with_capacity(files.iter().map(|f| f.text.len() + 1).sum());
        let mut starts = Vec::with_capacity(files.len());
        let mut line: u32 = 1;
        for f in files {
            starts.push(line);
            text.push_str(&f.text);
            if !f.text.is_empty() && !f.text.ends_with('\n') {
                text.push('\n');
            }
            let breaks = f.text.bytes().filter(|&b| b == b'\n').count();
            let lines = breaks + usize::from(!f.text.is_empty() && !f.text.ends_with('\n'));
            line = line.saturating_add(u32::try_from(lines).unwrap_or(u32::MAX));
        }
        Joined { text, starts }
    }

    /// The file span of a joined line (1-based) and column (0-based, as the YAML parser
    /// counts).
    pub fn span(&self, line: usize, col0: usize) -> Span {
        let line = u32::try_from(line).unwrap_or(u32::MAX).max(1);
        let file = self
            .starts
            .partition_point(|&s| s <= line)
            .saturating_sub(1);
        let start = self.starts.get(file).copied().unwrap_or(1);
        Span {
            file,
            line: line - start + 1,
            col: u32::try_from(col0).unwrap_or(u32::MAX).saturating_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_lines_map_back_to_each_file() {
        let files = vec![
            source("a", "x: 1\ny: 2\n"),
            source("b", "z: 3"),
            source("c", "w: 4\n"),
        ];
        let j = Joined::new(&files);
        assert_eq!(j.text, "x: 1\ny: 2\nz: 3\nw: 4\n");
        assert_eq!(
            j.span(2, 0),
            Span {
                file: 0,
                line: 2,
                col: 1
            }
        );
        assert_eq!(
            j.span(3, 3),
            Span {
                file: 1,
                line: 1,
                col: 4
            }
        );
        assert_eq!(
            j.span(4, 0),
            Span {
                file: 2,
                line: 1,
                col: 1
            }
        );
    }

    #[test]
    fn byte_order_mark_is_dropped() {
        assert_eq!(source("a", "\u{feff}x: 1").text, "x: 1");
    }
}
