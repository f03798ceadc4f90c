//! Configuration errors with a place: file, line:column, field path, message and hint,
//! rendered rustc-style with the offending source line and a caret underline.
//!
//! Rendering is pure; the caller decides where it goes (stderr for `rooftop check`).

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::yaml::{FieldPath, Loc};

/// Most problems reported per file; past it, one more diagnostic says how many were left
/// out (`more_problems`). Nobody reads the 101st, and a list of 100,000 bad items would
/// otherwise cost memory and output in proportion.
pub const MAX_PER_FILE: usize = 100;

/// The field path of the "and N more" diagnostic, which sorts last among a file's.
pub const MORE_PATH: &str = "(more)";

/// Source lines longer than this are shown as a window around the column.
const MAX_SNIPPET_CHARS: usize = 160;

/// "… and 3 more problems in this file", after the first `MAX_PER_FILE`.
pub fn more_problems(file: &Path, loc: Loc, dropped: usize) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        loc,
        path: MORE_PATH.into(),
        message: format!(
            "… and {dropped} more problem{} in this file (only the first {MAX_PER_FILE} are listed)",
            if dropped == 1 { "" } else { "s" }
        ),
        hint: Some("fix these and run `rooftop check` again".into()),
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Loc,
    /// Field path inside the document, e.g. `steps[1].sync.since`.
    pub path: String,
    pub message: String,
    /// "did you mean `book-appointment`?", or an example of a valid value.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, loc: Loc, path: &FieldPath, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            loc,
            path: path.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// rustc-style rendering; `source` is the file's text (for the snippet), if available.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "error: {}", self.message);
        let gutter = self.loc.line.to_string().len();
        let pad = " ".repeat(gutter);
        let _ = writeln!(
            out,
            "{pad}--> {}:{}:{}",
            self.file.display(),
            self.loc.line,
            self.loc.col
        );
        if let Some(line) = source.and_then(|s| s.lines().nth(self.loc.line.saturating_sub(1))) {
            let (line, col, len) = snippet_window(line.trim_end(), self.loc.col, self.loc.len);
            // A lone CR would send the terminal's cursor back to the line's start.
            let line = line.replace('\r', "␍");
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {line}", self.loc.line);
            let indent: String = line
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let at = if self.path.starts_with('(') {
                String::new()
            } else {
                format!(" at {}", self.path)
            };
            let _ = writeln!(out, "{pad} | {indent}{}{at}", "^".repeat(len.max(1)));
        } else {
            let _ = writeln!(out, "{pad} = at {}", self.path);
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "{pad} = help: {h}");
        }
        out
    }
}

/// The part of a long source line around `col` (with `…` where it is cut), and the
/// column and caret width within that part. Short lines come back whole.
fn snippet_window(line: &str, col: usize, len: usize) -> (String, usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= MAX_SNIPPET_CHARS {
        return (line.to_string(), col, len);
    }
    let at = col.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(MAX_SNIPPET_CHARS / 3);
    let end = (start + MAX_SNIPPET_CHARS).min(chars.len());
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push('…');
    }
    let col = at - start + 1 + usize::from(start > 0);
    let len = len.min(end.saturating_sub(at)).max(1);
    (shown, col, len)
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.loc.line,
            self.loc.col,
            self.path,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Longer names are never compared for a "did you mean": Jaro-Winkler takes time in the
/// product of the two lengths, and nothing that long is a typo of a field or zone name.
const MAX_HINT_CHARS: usize = 256;

/// The closest candidate to `wrong`, if it is close enough to be a likely typo.
pub fn closest<'a, I>(wrong: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    if wrong.len() > MAX_HINT_CHARS {
        return None;
    }
    let wrong_l = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter(|c| c.len() <= MAX_HINT_CHARS)
        .map(|c| {
            let score = strsim::jaro_winkler(&wrong_l, &c.to_ascii_lowercase());
            (score, c)
        })
        .filter(|(s, _)| *s >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" when a candidate is close, else the list of valid names (short lists).
pub fn did_you_mean<'a, I>(wrong: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    if let Some(c) = closest(wrong, candidates.clone()) {
        return Some(format!("did you mean `{c}`?"));
    }
    let all: Vec<&str> = candidates.into_iter().collect();
    match all.len() {
        0 => None,
        1..=8 => Some(format!(
            "expected one of {}",
            all.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_a_close_name() {
        let names = ["book-appointment", "ro-in-dms", "survey-triggered"];
        assert_eq!(
            did_you_mean("book-apointment", names.iter().copied()).as_deref(),
            Some("did you mean `book-appointment`?")
        );
        assert_eq!(
            did_you_mean("zzz", names.iter().copied()).as_deref(),
            Some("expected one of `book-appointment`, `ro-in-dms`, `survey-triggered`")
        );
    }

    #[test]
    fn a_very_long_wrong_name_gets_no_hint_and_no_quadratic_time() {
        // Regression (config fuzzing): a 64 kB `timezone` compared with every zone name
        // took 15 s in a debug build.
        let wrong = "-".repeat(65_536);
        let zones: Vec<String> = (0..600).map(|i| format!("America/Zone{i}")).collect();
        assert_eq!(closest(&wrong, zones.iter().map(String::as_str)), None);
        let long_candidate = "x".repeat(1 << 20);
        assert_eq!(closest("xx", [long_candidate.as_str()]), None);
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_column() {
        // Regression (config fuzzing): every diagnostic on a 900 kB line printed all of it.
        let line = format!("list: [{}]", "\"{{ y }}\", ".repeat(100_000));
        let col = 7 + 11 * 50_000 + 1;
        let d = Diagnostic::new(
            Path::new("probes/a.yaml"),
            Loc {
                line: 1,
                col,
                len: 9,
            },
            &FieldPath::root().key("list").index(50_000),
            "unknown variable `y`",
        );
        let text = d.render(Some(&line));
        assert!(text.len() < 1000, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[3].starts_with("1 | …") && lines[3].ends_with('…'),
            "{text}"
        );
        let caret = lines[4].chars().position(|c| c == '^').unwrap();
        let under: String = lines[3].chars().skip(caret).take(9).collect();
        assert_eq!(under, "\"{{ y }}\"", "{text}");
        assert_eq!(lines[4].matches('^').count(), 9, "{text}");
    }

    #[test]
    fn renders_rustc_style() {
        let d = Diagnostic::new(
            Path::new("probes/a.yaml"),
            Loc {
                line: 2,
                col: 3,
                len: 5,
            },
            &FieldPath::root().key("steps").index(0).key("methd"),
            "unknown field `methd`",
        )
        .with_hint(Some("did you mean `method`?".into()));
        let text = d.render(Some("steps:\n  methd: GET\n"));
        assert_eq!(
            text,
            "error: unknown field `methd`\n --> probes/a.yaml:2:3\n  |\n2 |   methd: GET\n  |   ^^^^^ at steps[0].methd\n  = help: did you mean `method`?\n"
        );
    }
}
