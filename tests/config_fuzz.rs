//! Config fuzzing: random mutations of every bundled config file and of the bad-config
//! corpus, plus hostile special inputs (10 MB, deep nesting, billion laughs, NUL, invalid
//! UTF-8, huge lines and keys), through the real loader and validator, in process.
//!
//! The promise checked for every input: no panic, and every diagnostic has a place inside
//! its file (line ≥ 1 and ≤ line count + 1, col ≥ 1, a caret at least 1 wide). The test
//! runs a bounded, seeded campaign; `cargo bench --bench fuzz` runs a longer one (it
//! includes this file for `engine`). A failing input is saved under
//! `target/config-fuzz/` and named with its seed.
#![allow(
    dead_code,
    reason = "benches/fuzz.rs includes this file for its engine and uses only part of it"
)]

pub mod engine {
    use std::collections::BTreeMap;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use chrono::{TimeZone, Utc};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rooftop::config::{self, Defaults, Diagnostic};

    /// Which loader a file goes through.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        /// `probes/*.yaml`: `config::load_probe_text`.
        Probe,
        /// `rooftop.yaml`: `config::load_agent_text`.
        Agent,
    }

    /// One file of the corpus and the config directory it belongs to.
    #[derive(Debug, Clone)]
    pub struct Seed {
        /// The config directory (repository root, `packaging/`, a bad-config case).
        pub dir: PathBuf,
        /// The file's path inside `dir` (`probes/x.yaml`, `rooftop.yaml`).
        pub rel: PathBuf,
        pub kind: Kind,
        pub bytes: Vec<u8>,
    }

    impl Seed {
        pub fn name(&self) -> String {
            self.dir.join(&self.rel).display().to_string()
        }
    }

    /// Every config file of the repository at `root`: the bundled probes and
    /// `rooftop.yaml`, the packaging example and each `tests/bad_config/*/` case.
    pub fn corpus(root: &Path) -> Vec<Seed> {
        let mut dirs = vec![root.to_path_buf(), root.join("packaging")];
        let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/bad_config"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        cases.sort();
        dirs.extend(cases);
        let mut out = Vec::new();
        for dir in dirs {
            if let Ok(bytes) = std::fs::read(dir.join("rooftop.yaml")) {
                out.push(Seed {
                    dir: dir.clone(),
                    rel: "rooftop.yaml".into(),
                    kind: Kind::Agent,
                    bytes,
                });
            }
            let mut probes: Vec<PathBuf> = std::fs::read_dir(dir.join("probes"))
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            probes.sort();
            for p in probes {
                let yaml = matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
                if let (true, Ok(bytes), Some(name)) = (yaml, std::fs::read(&p), p.file_name()) {
                    out.push(Seed {
                        dir: dir.clone(),
                        rel: Path::new("probes").join(name),
                        kind: Kind::Probe,
                        bytes,
                    });
                }
            }
        }
        out
    }

    /// Every `runbooks/**/*.md` of a config directory, keyed as the loader keys them.
    pub fn runbooks(dir: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.join("runbooks")];
        while let Some(d) = stack.pop() {
            for p in std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
            {
                if p.is_dir() {
                    stack.push(p);
                } else if let (Ok(rel), Ok(text)) =
                    (p.strip_prefix(dir), std::fs::read_to_string(&p))
                {
                    out.insert(rel.to_string_lossy().replace('\\', "/"), text);
                }
            }
        }
        out
    }

    /// What replaces a scalar or is inserted: other YAML token types and hostile values.
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "[]",
        "{}",
        "&a",
        "*a",
        "&a x",
        "*b",
        "!!tag",
        "!!str",
        "!!binary",
        "!!map",
        "!<tag:yaml.org,2002:int>",
        "!",
        "- ",
        ": ",
        "? ",
        ",",
        "|",
        "|-",
        ">",
        ">+2",
        "\"",
        "'",
        "#",
        "%YAML 1.2\n",
        "%TAG ! x\n",
        "---\n",
        "...\n",
        "~",
        "null",
        "true",
        "-1",
        "0",
        "1e400",
        "-0.0",
        "NaN",
        ".inf",
        "0x",
        "0xFFFFFFFFFFFFFFFFFF",
        "0o777",
        "99999999999999999999",
        "18446744073709551616",
        "1.5",
        "0s",
        "-5m",
        "1ns",
        "999999999999h",
        "30m",
        "P1",
        "P9",
        "* * * * * *",
        "0 0 31 2 * *",
        "\t",
        "\r",
        "\r\n",
        "\0",
        "\u{feff}",
        "\u{2028}",
        "\u{85}",
        "é",
        "🚗",
        "\\",
        "{{",
        "}}",
        "{{ x }}",
        "{{ secret.x }}",
        "{{ env.X | y }}",
        "{% if %}",
        "$.",
        "$.a[",
        "$..*",
        "$[?(@)]",
        "<<: *a",
        "runbooks/../../etc/passwd",
        "/",
        "http://",
        "127.0.0.1:99999",
        "name",
        "steps",
        "request",
        "cleanup",
        "depend_on",
        "oncall",
        "rotations",
        "escalation",
    ];

    /// A string of `n` random-ish characters (for very long scalars and keys).
    fn long_string(rng: &mut StdRng, n: usize) -> String {
        let c = ['x', 'é', ' ', '-', ':', '9'][rng.random_range(0..6)];
        std::iter::repeat_n(c, n).collect()
    }

    fn line_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                out.push((start, i + 1));
                start = i + 1;
            }
        }
        if start < bytes.len() {
            out.push((start, bytes.len()));
        }
        out
    }

    fn token(rng: &mut StdRng) -> Vec<u8> {
        if rng.random_ratio(1, 20) {
            let n = [100, 4096, 65_536][rng.random_range(0..3)];
            long_string(rng, n).into_bytes()
        } else {
            TOKENS[rng.random_range(0..TOKENS.len())]
                .as_bytes()
                .to_vec()
        }
    }

    /// One random mutation of `input`; `other` is another corpus file to splice from.
    pub fn mutate_once(rng: &mut StdRng, input: &mut Vec<u8>, other: &[u8]) {
        let len = input.len();
        let at = |rng: &mut StdRng, n: usize| if n == 0 { 0 } else { rng.random_range(0..=n) };
        match rng.random_range(0..12) {
            // Byte flips.
            0 if len > 0 => {
                for _ in 0..rng.random_range(1..=4) {
                    let i = rng.random_range(0..len);
                    input[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // A random byte anywhere.
            1 => {
                let i = at(rng, len);
                input.insert(i, rng.random());
            }
            // Delete a span.
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=64.min(len - i));
                input.drain(i..i + n);
            }
            // Insert a token or a span copied from elsewhere.
            3 => {
                let i = at(rng, len);
                let what = if rng.random_bool(0.5) || len == 0 {
                    token(rng)
                } else {
                    let s = rng.random_range(0..len);
                    input[s..(s + rng.random_range(1..=64)).min(len)].to_vec()
                };
                input.splice(i..i, what);
            }
            // Duplicate a line.
            4 | 5 => {
                let lines = line_spans(input);
                if let Some(&(s, e)) = lines.get(at(rng, lines.len().saturating_sub(1))) {
                    let line = input[s..e].to_vec();
                    let dest = lines[rng.random_range(0..lines.len())].0;
                    input.splice(dest..dest, line);
                }
            }
            // Swap two lines.
            6 => {
                let lines = line_spans(input);
                if lines.len() >= 2 {
                    let (a, b) = (
                        rng.random_range(0..lines.len()),
                        rng.random_range(0..lines.len()),
                    );
                    let (a, b) = (lines[a.min(b)], lines[a.max(b)]);
                    if a != b {
                        let mut out = input[..a.0].to_vec();
                        out.extend_from_slice(&input[b.0..b.1]);
                        out.extend_from_slice(&input[a.1..b.0]);
                        out.extend_from_slice(&input[a.0..a.1]);
                        out.extend_from_slice(&input[b.1..]);
                        *input = out;
                    }
                }
            }
            // Replace a scalar (after `: ` or `- `, to the end of the line or the next
            // flow delimiter) with another token type.
            7 | 8 => {
                let lines = line_spans(input);
                if lines.is_empty() {
                    return;
                }
                let (s, e) = lines[rng.random_range(0..lines.len())];
                let line = &input[s..e];
                let starts: Vec<usize> = (0..line.len().saturating_sub(1))
                    .filter(|&i| matches!(&line[i..i + 2], b": " | b"- "))
                    .map(|i| i + 2)
                    .collect();
                if let Some(&v) = starts.get(at(rng, starts.len().saturating_sub(1))) {
                    let end = line[v..]
                        .iter()
                        .position(|b| matches!(b, b',' | b'}' | b']' | b'\n' | b'#'))
                        .map_or(line.len(), |p| v + p);
                    input.splice(s + v..s + end, token(rng));
                }
            }
            // Indentation: a line in or out by one or two columns, or a tab.
            9 => {
                let lines = line_spans(input);
                if lines.is_empty() {
                    return;
                }
                let (s, e) = lines[rng.random_range(0..lines.len())];
                match rng.random_range(0..3) {
                    0 => {
                        input.splice(s..s, b"  ".iter().copied());
                    }
                    1 if input[s..e].starts_with(b" ") => {
                        input.remove(s);
                    }
                    _ => {
                        input.insert(s, b'\t');
                    }
                }
            }
            // A line spliced in from another corpus file.
            10 => {
                let theirs = line_spans(other);
                let ours = line_spans(input);
                if let (false, false) = (theirs.is_empty(), ours.is_empty()) {
                    let (s, e) = theirs[rng.random_range(0..theirs.len())];
                    let dest = ours[rng.random_range(0..ours.len())].0;
                    input.splice(dest..dest, other[s..e].to_vec());
                }
            }
            // Truncate.
            _ if len > 0 => input.truncate(rng.random_range(0..len)),
            _ => input.extend(token(rng)),
        }
    }

    /// `input` with one to four stacked mutations.
    pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..rng.random_range(1..=4) {
            mutate_once(rng, &mut out, other);
        }
        out
    }

    /// Hostile inputs, each with the loader that gets it. `probe` is a valid probe file.
    pub fn special_inputs(probe: &[u8]) -> Vec<(&'static str, Kind, Vec<u8>)> {
        let mut v: Vec<(&'static str, Kind, Vec<u8>)> = Vec::new();
        let mut big = b"name: big\nsteps: [\n".to_vec();
        while big.len() < 10 << 20 {
            big.extend_from_slice(b"  {name: s, request: {url: \"http://x/\"}},\n");
        }
        big.extend_from_slice(b"]\n");
        v.push(("a 10 MB probe file", Kind::Probe, big.clone()));
        v.push(("a 10 MB rooftop.yaml", Kind::Agent, big));
        v.push(("100,000 `[`", Kind::Probe, "[".repeat(100_000).into_bytes()));
        v.push((
            "100,000 `{a: `",
            Kind::Probe,
            "{a: ".repeat(100_000).into_bytes(),
        ));
        v.push((
            "100,000 nested block sequences (`- - - …`)",
            Kind::Probe,
            format!("{}x\n", "- ".repeat(100_000)).into_bytes(),
        ));
        v.push((
            "1,000 nested block mappings by indentation",
            Kind::Agent,
            (0..1000)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()
                .into_bytes(),
        ));
        let mut laughs = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for (i, c) in "bcdefghi".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            let items = vec![format!("*{prev}"); 10].join(",");
            laughs.push_str(&format!("{c}: &{c} [{items}]\n"));
        }
        v.push((
            "billion laughs (nine levels)",
            Kind::Probe,
            laughs.clone().into(),
        ));
        v.push(("billion laughs in rooftop.yaml", Kind::Agent, laughs.into()));
        let mut nul = probe.to_vec();
        let at = nul.iter().position(|b| *b == b'\n').unwrap_or(0);
        nul.splice(at..at, b"\0 x".iter().copied());
        v.push(("a NUL byte", Kind::Probe, nul));
        let mut bad = probe.to_vec();
        bad.splice(at..at, [b' ', 0xff, 0xfe, b'x']);
        v.push(("invalid UTF-8", Kind::Probe, bad));
        v.push((
            "CR-only line endings",
            Kind::Probe,
            probe
                .iter()
                .map(|b| if *b == b'\n' { b'\r' } else { *b })
                .collect(),
        ));
        let mut bom = "\u{feff}".as_bytes().to_vec();
        bom.extend_from_slice(probe);
        v.push(("a byte-order mark", Kind::Probe, bom));
        let text = String::from_utf8_lossy(probe);
        let long_description = text
            .lines()
            .map(|l| match l.starts_with("description:") {
                true => format!("description: \"{}\"\n", "x".repeat(900_000)),
                false => format!("{l}\n"),
            })
            .collect::<String>();
        v.push((
            "a huge single line (900 kB description)",
            Kind::Probe,
            long_description.into_bytes(),
        ));
        v.push((
            "a huge single line (10 MB)",
            Kind::Probe,
            format!("description: {}\n", "x".repeat(10 << 20)).into_bytes(),
        ));
        v.push((
            "a very long plain key (500 kB)",
            Kind::Probe,
            format!("{}: 1\nname: x\n", "k".repeat(500_000)).into_bytes(),
        ));
        v.push((
            "a very long explicit key (`? ` 500 kB)",
            Kind::Probe,
            format!("? {}\n: 1\nname: x\n", "k".repeat(500_000)).into_bytes(),
        ));
        let key = "k".repeat(1000);
        v.push((
            "1,000-char keys over a 90k-item list (JSON body)",
            Kind::Probe,
            format!(
                "name: x\nsteps:\n- name: s\n  request:\n    url: http://x/\n    json:\n      ? {key}\n      : ? {key}\n        : [{}]\n",
                "\"{{ y }}\",".repeat(90_000)
            )
            .into_bytes(),
        ));
        v.push((
            "70,000 unknown keys (0.9 MB)",
            Kind::Agent,
            (0..70_000)
                .map(|i| format!("k{i}: {i}\n"))
                .collect::<String>()
                .into_bytes(),
        ));
        v
    }

    /// What checking one input found.
    #[derive(Debug, Clone, Default)]
    pub struct Verdict {
        /// The loader accepted the input.
        pub valid: bool,
        pub diagnostics: Vec<Diagnostic>,
        /// Broken promises: diagnostics without a place inside their file.
        pub problems: Vec<String>,
    }

    /// How many lines `text` has, as the diagnostic renderer counts them.
    fn line_count(text: &str) -> usize {
        text.lines().count()
    }

    /// Every diagnostic's place lies inside the file it names (`text`), and rendering it
    /// works.
    fn check_place(d: &Diagnostic, text: Option<&str>, problems: &mut Vec<String>) {
        let lines = text.map_or(0, line_count);
        let ok = d.loc.line >= 1 && d.loc.line <= lines + 1 && d.loc.col >= 1 && d.loc.len >= 1;
        if !ok {
            problems.push(format!(
                "diagnostic out of bounds (file has {lines} lines): {}:{}:{} len {}: {}",
                d.file.display(),
                d.loc.line,
                d.loc.col,
                d.loc.len,
                d.message
            ));
        }
        // The caret must land on the line, at most one past its end.
        let width = text
            .and_then(|t| t.lines().nth(d.loc.line.saturating_sub(1)))
            .map(|l| l.chars().count());
        if let Some(width) = width
            && d.loc.col > width + 1
        {
            problems.push(format!(
                "column past the end of its line ({width} characters): {}:{}:{}: {}",
                d.file.display(),
                d.loc.line,
                d.loc.col,
                d.message
            ));
        }
        if d.message.trim().is_empty() {
            problems.push(format!(
                "diagnostic without a message at {}",
                d.file.display()
            ));
        }
        let rendered = d.render(text);
        if !rendered.contains(&format!(
            "{}:{}:{}",
            d.file.display(),
            d.loc.line,
            d.loc.col
        )) {
            problems.push(format!("rendering lost the place: {rendered}"));
        }
    }

    /// A fixed instant for the on-call lints (no wall clock in tests).
    fn lint_now() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0)
            .single()
            .expect("a valid instant")
    }

    /// Runs one file's text through its loader (in process, no I/O).
    pub fn check_text(
        kind: Kind,
        file: &Path,
        text: &str,
        runbooks: &BTreeMap<String, String>,
    ) -> Verdict {
        let mut v = Verdict::default();
        let result = match kind {
            Kind::Probe => {
                config::load_probe_text(file, text, &Defaults::default(), runbooks).map(|_| ())
            }
            Kind::Agent => config::load_agent_text(file, text).map(|(agent, _)| {
                let _ = config::lint::findings(&agent, lint_now());
            }),
        };
        match result {
            Ok(()) => v.valid = true,
            Err(d) => {
                if d.is_empty() {
                    v.problems.push("an error without any diagnostic".into());
                }
                for d in &d {
                    if d.file != file {
                        v.problems.push(format!(
                            "diagnostic names another file: {}",
                            d.file.display()
                        ));
                    }
                    check_place(d, Some(text), &mut v.problems);
                }
                v.diagnostics = d;
            }
        }
        v
    }

    /// Runs a whole config directory through `config::load` (reads the files itself).
    pub fn check_dir(dir: &Path) -> Verdict {
        let mut v = Verdict::default();
        match config::load(dir) {
            Ok(c) => {
                v.valid = true;
                let _ = config::lint::findings(&c.agent, lint_now());
            }
            Err(errors) => {
                if errors.diagnostics.is_empty() {
                    v.problems.push("an error without any diagnostic".into());
                }
                let _ = errors.render();
                for d in &errors.diagnostics {
                    let text = std::fs::read(&d.file)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    check_place(d, text.as_deref(), &mut v.problems);
                }
                v.diagnostics = errors.diagnostics;
            }
        }
        v
    }

    /// One input that broke a promise.
    #[derive(Debug, Clone)]
    pub struct Failure {
        pub what: String,
        /// Where the input was saved.
        pub saved: PathBuf,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} (input saved as {})", self.what, self.saved.display())
        }
    }

    /// What to run.
    #[derive(Debug, Clone)]
    pub struct Options {
        pub seed: u64,
        /// Stop after this many inputs …
        pub max_inputs: u64,
        /// … or after this long, whichever comes first.
        pub max_time: Duration,
        /// Every n-th input goes through `config::load` on a directory (the others through
        /// the in-process text loaders); inputs that are not UTF-8 always do.
        pub dir_every: u64,
        /// Where the corpus directories are copied to be mutated in place.
        pub scratch: PathBuf,
        /// Where failing inputs are saved.
        pub save_to: PathBuf,
    }

    /// What a campaign tried and found.
    #[derive(Debug, Clone, Default)]
    pub struct Campaign {
        pub inputs: u64,
        pub via_dir: u64,
        pub valid: u64,
        pub diagnostics: u64,
        pub panics: Vec<Failure>,
        pub problems: Vec<Failure>,
        /// The slowest input: time, and the corpus file it was mutated from.
        pub slowest: (Duration, String),
        /// The slowest input itself.
        pub slowest_input: Vec<u8>,
        pub elapsed: Duration,
    }

    fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    }

    fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for name in ["rooftop.yaml", "probes", "runbooks"] {
            let src = from.join(name);
            if src.is_file() {
                std::fs::copy(&src, to.join(name))?;
            } else if src.is_dir() {
                let mut stack = vec![src.clone()];
                while let Some(d) = stack.pop() {
                    let rel = d.strip_prefix(from).expect("under from");
                    std::fs::create_dir_all(to.join(rel))?;
                    for e in std::fs::read_dir(&d)?.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            std::fs::copy(&p, to.join(p.strip_prefix(from).expect("under")))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one input, in process (`dir` = None) or through `config::load` on the
    /// scratch copy `dir` of its config directory; a panic is caught and returned.
    pub fn check_input(
        seed: &Seed,
        bytes: &[u8],
        dir: Option<&Path>,
        runbooks: &BTreeMap<String, String>,
    ) -> Result<Verdict, String> {
        let text = std::str::from_utf8(bytes).ok();
        match (dir, text) {
            (None, Some(text)) => catch_unwind(AssertUnwindSafe(|| {
                check_text(seed.kind, &seed.rel, text, runbooks)
            }))
            .map_err(|p| panic_message(&*p)),
            (None, None) => Err("a non-UTF-8 input needs a directory".into()),
            (Some(dir), _) => {
                let file = dir.join(&seed.rel);
                std::fs::write(&file, bytes).map_err(|e| format!("cannot write: {e}"))?;
                let r = catch_unwind(AssertUnwindSafe(|| check_dir(dir)))
                    .map_err(|p| panic_message(&*p));
                std::fs::write(&file, &seed.bytes).map_err(|e| format!("cannot restore: {e}"))?;
                r
            }
        }
    }

    /// A seeded campaign over `corpus`.
    pub fn run(corpus: &[Seed], opts: &Options) -> Campaign {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(opts.seed);
        let mut c = Campaign::default();
        let mut dirs: BTreeMap<PathBuf, (PathBuf, BTreeMap<String, String>)> = BTreeMap::new();
        for s in corpus {
            if !dirs.contains_key(&s.dir) {
                let scratch = opts.scratch.join(format!("dir{}", dirs.len()));
                if let Err(e) = copy_dir(&s.dir, &scratch) {
                    panic!(
                        "cannot copy {} to {}: {e}",
                        s.dir.display(),
                        scratch.display()
                    );
                }
                dirs.insert(s.dir.clone(), (scratch, runbooks(&s.dir)));
            }
        }
        while c.inputs < opts.max_inputs && started.elapsed() < opts.max_time {
            let seed = &corpus[rng.random_range(0..corpus.len())];
            let other = &corpus[rng.random_range(0..corpus.len())];
            let bytes = mutate(&mut rng, &seed.bytes, &other.bytes);
            let (scratch, runbooks) = &dirs[&seed.dir];
            let via_dir =
                c.inputs % opts.dir_every.max(1) == 0 || std::str::from_utf8(&bytes).is_err();
            let t = Instant::now();
            let r = check_input(seed, &bytes, via_dir.then_some(scratch.as_path()), runbooks);
            let took = t.elapsed();
            if took > c.slowest.0 {
                c.slowest = (took, seed.name());
                c.slowest_input = bytes.clone();
            }
            let n = c.inputs;
            c.inputs += 1;
            c.via_dir += u64::from(via_dir);
            let save = |what: String| {
                let saved = opts.save_to.join(format!(
                    "seed{}-input{n}-{}",
                    opts.seed,
                    seed.rel
                        .file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or("x.yaml")
                ));
                let _ = std::fs::create_dir_all(&opts.save_to);
                let _ = std::fs::write(&saved, &bytes);
                Failure {
                    what: format!(
                        "seed {} input {n} (from {}): {what}",
                        opts.seed,
                        seed.name()
                    ),
                    saved,
                }
            };
            match r {
                Err(p) => c.panics.push(save(format!("panic: {p}"))),
                Ok(v) => {
                    c.valid += u64::from(v.valid);
                    c.diagnostics += v.diagnostics.len() as u64;
                    for p in v.problems {
                        c.problems.push(save(p));
                    }
                }
            }
        }
        c.elapsed = started.elapsed();
        c
    }

    /// The process's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib() -> Option<u64> {
        proc_status_kib("VmHWM:")
    }

    /// The process's resident set now (VmRSS), in KiB.
    pub fn rss_kib() -> Option<u64> {
        proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(field: &str) -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Resets VmHWM to the current RSS (Linux: `5` to /proc/self/clear_refs), so the next
    /// reading is the peak of what follows. False where that is not possible.
    pub fn reset_peak_rss() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }

    /// The outcome of one special input.
    #[derive(Debug, Clone)]
    pub struct Special {
        pub name: &'static str,
        pub size: usize,
        /// `accepted`, or the first diagnostic (`file:line:col: message`) and a count.
        pub outcome: String,
        pub took: Duration,
        /// Peak RSS while it ran (when VmHWM could be reset), else the process's peak.
        pub peak_rss_kib: Option<u64>,
        pub failure: Option<String>,
    }

    /// Runs every special input, in process when it is UTF-8, else through `load(dir)` on
    /// a scratch directory holding only it.
    pub fn run_special(
        probe: &[u8],
        runbooks: &BTreeMap<String, String>,
        scratch: &Path,
        mut on_each: impl FnMut(&Special),
    ) -> Vec<Special> {
        let mut out = Vec::new();
        for (name, kind, bytes) in special_inputs(probe) {
            let dir = scratch.join("special");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("probes")).expect("scratch dir");
            if kind == Kind::Agent {
                std::fs::write(dir.join("probes/ok.yaml"), probe).expect("scratch probe");
            }
            let seed = Seed {
                dir: dir.clone(),
                rel: match kind {
                    Kind::Probe => "probes/special.yaml".into(),
                    Kind::Agent => "rooftop.yaml".into(),
                },
                kind,
                bytes: Vec::new(),
            };
            let via_dir = std::str::from_utf8(&bytes).is_err();
            reset_peak_rss();
            let t = Instant::now();
            let r = check_input(&seed, &bytes, via_dir.then_some(dir.as_path()), runbooks);
            let took = t.elapsed();
            let peak = peak_rss_kib();
            let (outcome, failure) = match r {
                Err(p) => (format!("panic: {p}"), Some(format!("{name}: panic: {p}"))),
                Ok(v) if v.valid => ("accepted".to_string(), None),
                Ok(v) => {
                    let first = v
                        .diagnostics
                        .first()
                        .map(|d| {
                            let file = d.file.file_name().map(Path::new).unwrap_or(&d.file);
                            let msg: String = d.message.chars().take(160).collect();
                            format!("{}:{}:{}: {msg}", file.display(), d.loc.line, d.loc.col)
                        })
                        .unwrap_or_default();
                    let more = v.diagnostics.len().saturating_sub(1);
                    let outcome = if more > 0 {
                        format!("{first} (+{more} more)")
                    } else {
                        first
                    };
                    let failure = (!v.problems.is_empty())
                        .then(|| format!("{name}: {}", v.problems.join("; ")));
                    (outcome, failure)
                }
            };
            let _ = std::fs::remove_dir_all(&dir);
            let special = Special {
                name,
                size: bytes.len(),
                outcome,
                took,
                peak_rss_kib: peak,
                failure,
            };
            on_each(&special);
            out.push(special);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    // Paths in full: benches/fuzz.rs includes this file, and there the tests (not this
    // module) are left out, which would leave imports unused.
    use std::path::PathBuf;

    /// Inputs of the test campaign: a few thousand, seconds in a debug build.
    const INPUTS: u64 = 5000;
    const SEED: u64 = 0x5eed_2026;
    /// A generous bound on the test process's peak memory after the hostile inputs
    /// (the loader's own peak on them is a few tens of MB; see the bench).
    const MAX_PEAK_RSS_KIB: u64 = 1 << 20;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn target_dir(name: &str) -> PathBuf {
        root().join("target/config-fuzz").join(name)
    }

    #[test]
    fn the_corpus_holds_every_bundled_and_bad_config_file() {
        let corpus = super::engine::corpus(&root());
        let names: Vec<String> = corpus.iter().map(|s| s.name()).collect();
        for want in [
            "probes/vin-identity.yaml",
            "packaging/rooftop.yaml",
            "bad_config/yaml-syntax/probes/broken.yaml",
        ] {
            assert!(
                names.iter().any(|n| n.ends_with(want)),
                "{want} not in {names:#?}"
            );
        }
        assert!(corpus.len() >= 20, "{names:#?}");
    }

    #[test]
    fn mutated_configs_never_panic_and_every_error_has_its_place() {
        let corpus = super::engine::corpus(&root());
        let scratch = tempfile::tempdir().unwrap();
        let opts = super::engine::Options {
            seed: SEED,
            max_inputs: INPUTS,
            max_time: std::time::Duration::from_secs(3600),
            dir_every: 10,
            scratch: scratch.path().to_path_buf(),
            save_to: target_dir("test"),
        };
        let c = super::engine::run(&corpus, &opts);
        println!(
            "config fuzz: {} inputs ({} through load(dir)), {} valid, {} diagnostics, {} panics, {} misplaced; slowest {:?} ({}), {:?} in all",
            c.inputs,
            c.via_dir,
            c.valid,
            c.diagnostics,
            c.panics.len(),
            c.problems.len(),
            c.slowest.0,
            c.slowest.1,
            c.elapsed
        );
        let _ = std::fs::create_dir_all(target_dir("test"));
        let _ = std::fs::write(target_dir("test").join("slowest.yaml"), &c.slowest_input);
        assert_eq!(c.inputs, INPUTS);
        let failures: Vec<String> = c
            .panics
            .iter()
            .chain(&c.problems)
            .map(|f| f.to_string())
            .collect();
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // The mutations must reach both sides: some inputs still load, most do not.
        assert!(
            c.valid > 0 && c.valid < c.inputs,
            "{} valid of {}",
            c.valid,
            c.inputs
        );
    }

    #[test]
    fn hostile_inputs_are_rejected_with_a_place_in_bounded_memory() {
        let probe = std::fs::read(root().join("probes/lead-to-bdc-call-list.yaml")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let specials = super::engine::run_special(
            &probe,
            &super::engine::runbooks(&root()),
            scratch.path(),
            |s| {
                println!(
                    "{:<45} {:>9} B  {:>8.1?}  peak {:>7} KiB  {}",
                    s.name,
                    s.size,
                    s.took,
                    s.peak_rss_kib.unwrap_or(0),
                    s.outcome
                )
            },
        );
        let failures: Vec<&String> = specials.iter().filter_map(|s| s.failure.as_ref()).collect();
        assert!(failures.is_empty(), "{failures:#?}");
        let outcome = |name: &str| {
            &specials
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("no special input {name}"))
                .outcome
        };
        assert!(
            outcome("a 10 MB probe file").contains("a probe file may be at most 1 MiB"),
            "{}",
            outcome("a 10 MB probe file")
        );
        assert!(
            outcome("100,000 `[`").contains(":1:"),
            "{}",
            outcome("100,000 `[`")
        );
        assert!(
            outcome("billion laughs (nine levels)").contains("alias"),
            "{}",
            outcome("billion laughs (nine levels)")
        );
        assert!(
            outcome("invalid UTF-8").contains("UTF-8"),
            "{}",
            outcome("invalid UTF-8")
        );
        if let Some(peak) = super::engine::peak_rss_kib() {
            assert!(peak < MAX_PEAK_RSS_KIB, "peak RSS {peak} KiB");
        }
    }

    #[test]
    fn directory_inputs_leave_the_scratch_copy_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let corpus: Vec<super::engine::Seed> = super::engine::corpus(&root())
            .into_iter()
            .filter(|s| s.rel == std::path::Path::new("probes/vin-identity.yaml"))
            .take(1)
            .collect();
        let opts = super::engine::Options {
            seed: 7,
            max_inputs: 5,
            max_time: std::time::Duration::from_secs(60),
            dir_every: 1,
            scratch: dir.path().join("scratch"),
            save_to: dir.path().join("saved"),
        };
        let c = super::engine::run(&corpus, &opts);
        assert_eq!((c.inputs, c.via_dir), (5, 5));
        assert!(c.panics.is_empty() && c.problems.is_empty(), "{c:#?}");
        let copy = std::fs::read(dir.path().join("scratch/dir0/probes/vin-identity.yaml")).unwrap();
        assert_eq!(copy, corpus[0].bytes);
    }
}
