//! Configuration errors with a place: file, line:column, field path, message and hint,
//! rendered rustc-style with the offending source line and a caret underline.
//!
//! Rendering is pure; the caller decides where it goes (stderr for `rooftop check`).

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use super::yaml::{FieldPath, Loc};

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
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", self.loc.line, line.trim_end());
            let indent: String = line
                .chars()
                .take(self.loc.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let at = if self.path.starts_with('(') {
                String::new()
            } else {
                format!(" at {}", self.path)
            };
            let _ = writeln!(
                out,
                "{pad} | {indent}{}{at}",
                "^".repeat(self.loc.len.max(1))
            );
        } else {
            let _ = writeln!(out, "{pad} = at {}", self.path);
        }
        if let Some(h) = &self.hint {
            let _ = writeln!(out, "{pad} = help: {h}");
        }
        out
    }
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

/// The closest candidate to `wrong`, if it is close enough to be a likely typo.
pub fn closest<'a, I>(wrong: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let wrong_l = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
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
