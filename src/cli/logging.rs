//! Where the agent's log events (`tracing`) go. On a terminal they read as they always
//! have: info lines on stdout (or stderr for the agent's own notes), `warning: …` and
//! `debug: …` on stderr, no timestamps (the journal and the terminal add their own).
//! Under systemd — `JOURNAL_STREAM` names this process's stdout or stderr — or with
//! `ROOFTOP_LOG_FORMAT=json`, each event is one JSON object on stdout with its fields
//! (`probe`, `run_id`, `outcome`, `incident`, …), so `journalctl -u rooftop -o cat | jq`
//! selects by them; under the journal each line starts with a syslog priority (`<4>`),
//! which journald strips into `PRIORITY=`, so `journalctl -p warning` works.
//! `ROOFTOP_LOG=error|warn|info|debug` sets the level (default `info`).

use std::fmt;
use std::io::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The target of info events that go to stderr on a terminal (start-up notes, retention,
/// recoveries), as opposed to the run and incident lines on stdout.
pub use crate::model::NOTE;

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human lines, as on a terminal.
    Text,
    /// One JSON object per line; `priority`: prefixed with `<N>` for journald.
    Json { priority: bool },
}

/// The format for `ROOFTOP_LOG_FORMAT` (`auto`, `text`, `json`; unset is `auto`) and
/// `JOURNAL_STREAM` (`device:inode` of the journal's stream), given the device and
/// inode of stdout and stderr.
pub fn choose(
    requested: Option<&str>,
    journal_stream: Option<&str>,
    streams: [Option<(u64, u64)>; 2],
) -> Result<Format, String> {
    let journal = journal_stream
        .and_then(|j| {
            let (dev, ino) = j.split_once(':')?;
            Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
        })
        .is_some_and(|id| streams.contains(&Some(id)));
    match requested.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") if journal => Ok(Format::Json { priority: true }),
        None | Some("") | Some("auto") | Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json { priority: journal }),
        Some(other) => Err(format!(
            "ROOFTOP_LOG_FORMAT=`{other}` is not a log format: auto, text or json"
        )),
    }
}

/// The level for `ROOFTOP_LOG` (unset: info).
pub fn level(requested: Option<&str>) -> Result<LevelFilter, String> {
    match requested.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("info") => Ok(LevelFilter::INFO),
        Some("error") => Ok(LevelFilter::ERROR),
        Some("warn") | Some("warning") => Ok(LevelFilter::WARN),
        Some("debug") => Ok(LevelFilter::DEBUG),
        Some("trace") => Ok(LevelFilter::TRACE),
        Some(other) => Err(format!(
            "ROOFTOP_LOG=`{other}` is not a level: error, warn, info or debug"
        )),
    }
}

/// Device and inode of file descriptor `fd`.
fn stream_id(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: `st` is written by fstat; a closed descriptor returns -1.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev as u64, st.st_ino as u64))
}

/// The format `init` chose; text until then.
static CHOSEN: std::sync::OnceLock<Format> = std::sync::OnceLock::new();

/// Whether events are JSON objects (under systemd, or asked for).
pub fn structured() -> bool {
    matches!(CHOSEN.get(), Some(Format::Json { .. }))
}

/// Configuration errors where the log goes: on a terminal rustc-style with the source
/// line and a caret; as JSON one `error` event per problem with `file`, `line`, `col`,
/// `field` and `hint` fields, so the journal keeps each with its place.
pub fn config_errors(errors: &crate::config::ConfigErrors) {
    if !structured() {
        eprint!("{}", errors.render());
        return;
    }
    for d in &errors.diagnostics {
        let file = d.file.display().to_string();
        tracing::error!(
            file = %file,
            line = d.loc.line,
            col = d.loc.col,
            field = %d.path,
            hint = d.hint.as_deref().unwrap_or(""),
            "{file}:{}:{}: {}",
            d.loc.line,
            d.loc.col,
            d.message
        );
    }
}

/// Installs the subscriber for this process from the environment. A bad value is
/// reported and the default used: logging never stops the agent.
pub fn init() {
    let env = |k: &str| std::env::var(k).ok();
    let format = choose(
        env("ROOFTOP_LOG_FORMAT").as_deref(),
        env("JOURNAL_STREAM").as_deref(),
        [stream_id(1), stream_id(2)],
    )
    .unwrap_or_else(|e| {
        eprintln!("warning: {e}; using text");
        Format::Text
    });
    let level = level(env("ROOFTOP_LOG").as_deref()).unwrap_or_else(|e| {
        eprintln!("warning: {e}; using info");
        LevelFilter::INFO
    });
    let builder = tracing_subscriber::fmt().with_max_level(level);
    let _ = CHOSEN.set(format);
    let _ = match format {
        Format::Text => builder
            .event_format(Plain)
            .with_writer(Streams { split: true })
            .try_init(),
        Format::Json { priority } => builder
            .event_format(Prefixed {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
                priority,
            })
            .with_writer(Streams { split: false })
            .try_init(),
    };
}

/// A line as a person reads it: the message, after `warning: ` / `error: ` /
/// `debug: ` by level; the fields stay for JSON.
pub struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            _ => "debug: ",
        };
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(w, "{prefix}{}", message.0)
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            use fmt::Write as _;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// JSON with journald's `<N>` priority in front when `priority`.
struct Prefixed<F> {
    inner: F,
    priority: bool,
}

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.priority {
            // syslog: 3 err, 4 warning, 6 info, 7 debug.
            let p = match *event.metadata().level() {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                _ => 7,
            };
            write!(w, "<{p}>")?;
        }
        self.inner.format_event(ctx, w, event)
    }
}

/// stdout or stderr for an event: with `split` (text), warnings, debug lines and notes go
/// to stderr; otherwise everything to stdout (one stream for the journal).
struct Streams {
    split: bool,
}

enum Stream {
    Out(io::Stdout),
    Err(io::Stderr),
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Out(s) => s.write(buf),
            Stream::Err(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Out(s) => s.flush(),
            Stream::Err(s) => s.flush(),
        }
    }
}

/// Whether a text line for `meta` goes to stderr.
fn to_stderr(meta: &Metadata<'_>) -> bool {
    *meta.level() != Level::INFO || meta.target() == NOTE
}

impl<'a> MakeWriter<'a> for Streams {
    type Writer = Stream;

    fn make_writer(&'a self) -> Stream {
        Stream::Out(io::stdout())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Stream {
        if self.split && to_stderr(meta) {
            Stream::Err(io::stderr())
        } else {
            Stream::Out(io::stdout())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_journal_is_json_with_priorities_only_when_it_is_our_stream() {
        let ours = [Some((25, 4711)), Some((25, 4712))];
        assert_eq!(choose(None, None, ours), Ok(Format::Text));
        assert_eq!(
            choose(None, Some("25:4712"), ours),
            Ok(Format::Json { priority: true })
        );
        assert_eq!(
            choose(Some("auto"), Some("25:9999"), ours),
            Ok(Format::Text),
            "inherited by a process whose output is redirected elsewhere"
        );
        assert_eq!(
            choose(Some("text"), Some("25:4711"), ours),
            Ok(Format::Text)
        );
        assert_eq!(
            choose(Some("JSON"), None, ours),
            Ok(Format::Json { priority: false })
        );
        assert_eq!(choose(None, Some("garbage"), ours), Ok(Format::Text));
        let e = choose(Some("yaml"), None, ours).unwrap_err();
        assert!(e.contains("auto, text or json"), "{e}");
    }

    #[test]
    fn levels_by_name_and_a_clear_error_otherwise() {
        assert_eq!(level(None), Ok(LevelFilter::INFO));
        assert_eq!(level(Some("DEBUG")), Ok(LevelFilter::DEBUG));
        assert_eq!(level(Some("warning")), Ok(LevelFilter::WARN));
        assert!(
            level(Some("loud"))
                .unwrap_err()
                .contains("error, warn, info or debug")
        );
    }

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn emit(format: Format) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_max_level(LevelFilter::DEBUG)
            .with_writer(buf.clone());
        let run = || {
            tracing::info!(
                probe = "lead-to-bdc",
                run_id = "run-1",
                "lead-to-bdc success 12ms"
            );
            tracing::warn!(probe = "lead-to-bdc", "page failed: sms");
            tracing::debug!("a reply that is not an ack");
        };
        match format {
            Format::Text => {
                tracing::subscriber::with_default(builder.event_format(Plain).finish(), run)
            }
            Format::Json { priority } => tracing::subscriber::with_default(
                builder
                    .event_format(Prefixed {
                        inner: tracing_subscriber::fmt::format().json().flatten_event(true),
                        priority,
                    })
                    .finish(),
                run,
            ),
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_reads_as_before_and_json_carries_the_fields() {
        assert_eq!(
            emit(Format::Text),
            "lead-to-bdc success 12ms\nwarning: page failed: sms\ndebug: a reply that is not an ack\n"
        );
        let json = emit(Format::Json { priority: true });
        let lines: Vec<&str> = json.lines().collect();
        assert_eq!(lines.len(), 3, "{json}");
        assert!(lines[0].starts_with("<6>{"), "{json}");
        assert!(lines[1].starts_with("<4>{"), "{json}");
        assert!(lines[2].starts_with("<7>{"), "{json}");
        let first: serde_json::Value = serde_json::from_str(&lines[0][3..]).unwrap();
        assert_eq!(first["message"], "lead-to-bdc success 12ms");
        assert_eq!(first["probe"], "lead-to-bdc");
        assert_eq!(first["run_id"], "run-1");
        assert_eq!(first["level"], "INFO");
        let plain = emit(Format::Json { priority: false });
        assert!(plain.starts_with('{'), "{plain}");
    }

    #[test]
    fn notes_warnings_and_debug_go_to_stderr_run_lines_to_stdout() {
        use tracing::callsite::Identifier;
        use tracing::metadata::Kind;
        struct Cs;
        impl tracing::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        static CS: Cs = Cs;
        let fields = |_: ()| tracing::field::FieldSet::new(&[], Identifier(&CS));
        let meta = |level, target| {
            Metadata::new(
                "e",
                target,
                level,
                None,
                None,
                None,
                fields(()),
                Kind::EVENT,
            )
        };
        assert!(!to_stderr(&meta(Level::INFO, "rooftop::agent")));
        assert!(to_stderr(&meta(Level::INFO, NOTE)));
        assert!(to_stderr(&meta(Level::WARN, "rooftop::agent")));
        assert!(to_stderr(&meta(Level::DEBUG, "rooftop::agent")));
    }
}
