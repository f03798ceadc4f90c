//! YAML text → a JSON value tree plus the source position of every node.
//!
//! Parsing is done with `saphyr-parser` (the YAML 1.2 parser behind serde-saphyr) so that
//! each key and value keeps its line:column; typing is left to serde. No I/O here.
//! Hostile input is bounded: nesting depth, key length and what aliases may expand to
//! are capped (`MAX_DEPTH`, `MAX_KEY_CHARS`, `MAX_ALIAS_NODES`), each an error with a place.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
    /// Width of the node on its first line, for the caret underline (at least 1).
    pub len: usize,
}

/// Where a node sits: the value, and for map entries the key too.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodePos {
    pub key: Option<Loc>,
    pub value: Loc,
}

/// A path into the document, printed as `steps[1].request.url`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct FieldPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    pub fn parent(&self) -> Option<Self> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }
    pub fn last(&self) -> Option<&Seg> {
        self.0.last()
    }
    pub fn segments(&self) -> &[Seg] {
        &self.0
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// How deep mappings and sequences may nest (a probe needs about 8 levels); deeper input
/// would overflow the stack of whoever walks the tree.
pub const MAX_DEPTH: usize = 64;

/// How long a mapping key may be, in characters (header names and JSONPath keys are far
/// shorter); every field path below a key holds a copy of it.
pub const MAX_KEY_CHARS: usize = 1024;

/// How many nodes aliases may copy into the document in all: enough to reuse a block of
/// headers in every step, not enough for a "billion laughs".
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A parsed YAML document: the value tree and the position of every node in it.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    /// Positions in a tree shaped like the value: a key is stored once, however many
    /// nodes lie below it (a map keyed by full paths would copy it into each).
    positions: Option<PosTree>,
}

/// The position of one node and of the nodes it holds.
#[derive(Debug, Clone, Default)]
struct PosTree {
    pos: NodePos,
    children: PosChildren,
}

#[derive(Debug, Clone, Default)]
enum PosChildren {
    /// A scalar, or an alias (its copy has no positions of its own).
    #[default]
    Leaf,
    Seq(Vec<PosTree>),
    Map(HashMap<String, PosTree>),
}

impl PosTree {
    fn child(&self, seg: &Seg) -> Option<&PosTree> {
        match (seg, &self.children) {
            (Seg::Index(i), PosChildren::Seq(v)) => v.get(*i),
            (Seg::Key(k), PosChildren::Map(m)) => m.get(k),
            _ => None,
        }
    }
}

impl Document {
    /// The node at `path` (`exact`), or the nearest ancestor that has a position.
    fn find(&self, path: &FieldPath) -> (Option<&PosTree>, bool) {
        let Some(mut node) = self.positions.as_ref() else {
            return (None, false);
        };
        for seg in &path.0 {
            match node.child(seg) {
                Some(n) => node = n,
                None => return (Some(node), false),
            }
        }
        (Some(node), true)
    }

    /// The position of the node at `path`, or of its nearest ancestor that exists.
    pub fn locate(&self, path: &FieldPath) -> Loc {
        match self.find(path) {
            (Some(n), _) => n.pos.value,
            (None, _) => Loc {
                line: 1,
                col: 1,
                len: 1,
            },
        }
    }

    /// The position of the key of the map entry at `path` (falls back to its value).
    pub fn locate_key(&self, path: &FieldPath) -> Loc {
        match self.find(path) {
            (Some(n), true) => n.pos.key.unwrap_or(n.pos.value),
            _ => self.locate(path),
        }
    }

    /// Removes the node at `path` from the value tree (used to keep deserializing after an
    /// error). Returns false when there was nothing to remove.
    pub fn remove(&mut self, path: &FieldPath) -> bool {
        let Some((last, parent)) = path.0.split_last() else {
            return false;
        };
        let mut node = &mut self.value;
        for seg in parent {
            node = match (seg, node) {
                (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                    Some(n) => n,
                    None => return false,
                },
                (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                    Some(n) => n,
                    None => return false,
                },
                _ => return false,
            };
        }
        match (last, node) {
            (Seg::Key(k), Value::Object(m)) => m.shift_remove(k).is_some(),
            _ => false,
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub loc: Loc,
}

/// Parses one YAML document. Anchors and aliases are resolved; duplicate keys, non-scalar
/// keys and multiple documents are errors (a probe file holds exactly one probe).
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    check_line_ends(text)?;
    let mut builder = Builder {
        events: Vec::new(),
        pos: 0,
        anchors: HashMap::new(),
        alias_nodes: 0,
        text_lines: text.lines().collect(),
    };
    for ev in Parser::new_from_str(text) {
        match ev {
            Ok((event, span)) => builder.events.push((event, span)),
            Err(e) => {
                // Errors found at end of input point past the last line; show the last line.
                let lines = &builder.text_lines;
                let (line, col) = if e.marker().line() > lines.len() && !lines.is_empty() {
                    (lines.len(), lines[lines.len() - 1].chars().count() + 1)
                } else {
                    (e.marker().line().max(1), e.marker().col() + 1)
                };
                return Err(SyntaxError {
                    message: e.info().to_string(),
                    loc: Loc { line, col, len: 1 },
                });
            }
        }
    }
    builder.document()
}

/// YAML also ends a line at a lone CR, which nothing else here does (`str::lines`, the
/// renderer, editors on Linux): positions past one would point at the wrong line, so a
/// lone CR is an error at its own place.
fn check_line_ends(text: &str) -> Result<(), SyntaxError> {
    let bytes = text.as_bytes();
    let Some(at) =
        (0..bytes.len()).find(|&i| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'))
    else {
        return Ok(());
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Err(SyntaxError {
        message:
            "a carriage return (CR) without a line feed; save the file with LF or CRLF line endings"
                .into(),
        loc: Loc { line, col, len: 1 },
    })
}

/// An anchored node: its value, how many nodes it holds and how deep it nests.
struct Anchored {
    value: Value,
    nodes: usize,
    depth: usize,
}

/// A built node: its value, positions, size in nodes and nesting depth below it.
struct Built {
    value: Value,
    positions: PosTree,
    nodes: usize,
    depth: usize,
}

struct Builder<'a> {
    events: Vec<(Event<'a>, Span)>,
    pos: usize,
    anchors: HashMap<usize, Anchored>,
    /// Nodes copied in by aliases so far (`MAX_ALIAS_NODES`).
    alias_nodes: usize,
    text_lines: Vec<&'a str>,
}

impl<'a> Builder<'a> {
    fn document(mut self) -> Result<Document, SyntaxError> {
        let mut value = None;
        let mut positions = None;
        while self.pos < self.events.len() {
            let (ev, span) = &self.events[self.pos];
            match ev {
                Event::DocumentStart(_) => {
                    let loc = self.loc(span);
                    self.pos += 1;
                    if value.is_some() {
                        return Err(SyntaxError {
                            message: "a file holds one document; found a second `---`".into(),
                            loc,
                        });
                    }
                    // An empty document has no node before DocumentEnd.
                    if matches!(self.events.get(self.pos), Some((Event::DocumentEnd, _))) {
                        value = Some(Value::Null);
                    } else {
                        let built = self.node(0, None)?;
                        value = Some(built.value);
                        positions = Some(built.positions);
                    }
                }
                _ => self.pos += 1,
            }
        }
        Ok(Document {
            value: value.unwrap_or(Value::Null),
            positions,
        })
    }

    fn loc(&self, span: &Span) -> Loc {
        let line = span.start.line().max(1);
        let col = span.start.col() + 1;
        let len = if span.end.line() == span.start.line() {
            span.end.col().saturating_sub(span.start.col())
        } else {
            self.text_lines
                .get(line - 1)
                .map(|l| l.chars().count().saturating_sub(col - 1))
                .unwrap_or(1)
        };
        Loc {
            line,
            col,
            len: len.max(1),
        }
    }

    fn next(&mut self) -> Result<(Event<'a>, Span), SyntaxError> {
        let item = self.events.get(self.pos).cloned().ok_or(SyntaxError {
            message: "unexpected end of document".into(),
            loc: Loc {
                line: self.text_lines.len().max(1),
                col: 1,
                len: 1,
            },
        })?;
        self.pos += 1;
        Ok(item)
    }

    /// The node at nesting `depth` (0 for the document's root).
    fn node(&mut self, depth: usize, key: Option<Loc>) -> Result<Built, SyntaxError> {
        let (ev, span) = self.next()?;
        let loc = self.loc(&span);
        let too_deep = || SyntaxError {
            message: format!("mappings and sequences nest deeper than {MAX_DEPTH} levels here"),
            loc,
        };
        let mut built = Built {
            value: Value::Null,
            positions: PosTree {
                pos: NodePos { key, value: loc },
                children: PosChildren::Leaf,
            },
            nodes: 1,
            depth: 0,
        };
        let anchor = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                built.value = resolve_scalar(&text, style, is_str_tag);
                anchor
            }
            Event::Alias(id) => {
                let a = self.anchors.get(&id).ok_or(SyntaxError {
                    message: "alias refers to an unknown anchor".into(),
                    loc,
                })?;
                if depth + a.depth > MAX_DEPTH {
                    return Err(too_deep());
                }
                self.alias_nodes = self.alias_nodes.saturating_add(a.nodes);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias of an alias of …: a \"billion laughs\")"
                        ),
                        loc,
                    });
                }
                built.value = a.value.clone();
                built.nodes = a.nodes;
                built.depth = a.depth;
                0
            }
            Event::SequenceStart(anchor, _) => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                let mut items = Vec::new();
                let mut positions = Vec::new();
                loop {
                    if matches!(self.events.get(self.pos), Some((Event::SequenceEnd, _))) {
                        self.pos += 1;
                        break;
                    }
                    let child = self.node(depth + 1, None)?;
                    built.nodes = built.nodes.saturating_add(child.nodes);
                    built.depth = built.depth.max(child.depth + 1);
                    items.push(child.value);
                    positions.push(child.positions);
                }
                built.value = Value::Array(items);
                built.positions.children = PosChildren::Seq(positions);
                anchor
            }
            Event::MappingStart(anchor, _) => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                let mut map = Map::new();
                let mut positions = HashMap::new();
                loop {
                    if matches!(self.events.get(self.pos), Some((Event::MappingEnd, _))) {
                        self.pos += 1;
                        break;
                    }
                    let (kev, kspan) = self.next()?;
                    let kloc = self.loc(&kspan);
                    let k = match kev {
                        Event::Scalar(text, ..) => text.to_string(),
                        _ => {
                            return Err(SyntaxError {
                                message: "mapping keys must be plain strings".into(),
                                loc: kloc,
                            });
                        }
                    };
                    let chars = k.chars().count();
                    if chars > MAX_KEY_CHARS {
                        return Err(SyntaxError {
                            message: format!(
                                "a mapping key of {chars} characters; keys may be at most {MAX_KEY_CHARS}"
                            ),
                            loc: kloc,
                        });
                    }
                    if map.contains_key(&k) {
                        return Err(SyntaxError {
                            message: format!("duplicate key `{k}` in this mapping"),
                            loc: kloc,
                        });
                    }
                    let child = self.node(depth + 1, Some(kloc))?;
                    built.nodes = built.nodes.saturating_add(child.nodes);
                    built.depth = built.depth.max(child.depth + 1);
                    positions.insert(k.clone(), child.positions);
                    map.insert(k, child.value);
                }
                built.value = Value::Object(map);
                built.positions.children = PosChildren::Map(positions);
                anchor
            }
            other => {
                return Err(SyntaxError {
                    message: format!("unexpected YAML event {other:?}"),
                    loc,
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(
                anchor,
                Anchored {
                    value: built.value.clone(),
                    nodes: built.nodes,
                    depth: built.depth,
                },
            );
        }
        Ok(built)
    }
}

/// YAML 1.2 core schema for plain scalars; everything quoted or block-styled is a string.
fn resolve_scalar(text: &str, style: ScalarStyle, force_str: bool) -> Value {
    if force_str || style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric
        && let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let doc = parse("name: a\nsteps:\n  - name: b\n    request: {url: \"x\"}\n").unwrap();
        let p = FieldPath::root()
            .key("steps")
            .index(0)
            .key("request")
            .key("url");
        assert_eq!(p.to_string(), "steps[0].request.url");
        let v = doc.locate(&p);
        assert_eq!((v.line, v.col), (4, 20));
        let k = doc.locate_key(&FieldPath::root().key("steps").index(0).key("name"));
        assert_eq!((k.line, k.col, k.len), (3, 5, 4));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = parse("a: 201\nb: \"201\"\nc: true\nd: ~\ne: 1.5\nf: 30m\ng: 0x1F\n").unwrap();
        assert_eq!(doc.value["a"], Value::from(201));
        assert_eq!(doc.value["b"], Value::from("201"));
        assert_eq!(doc.value["c"], Value::from(true));
        assert_eq!(doc.value["d"], Value::Null);
        assert_eq!(doc.value["e"], Value::from(1.5));
        assert_eq!(doc.value["f"], Value::from("30m"));
        assert_eq!(doc.value["g"], Value::from(31));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_position() {
        let err = parse("name: a\nname: b\n").unwrap_err();
        assert!(err.message.contains("duplicate key `name`"));
        assert_eq!((err.loc.line, err.loc.col), (2, 1));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.loc.line >= 1, "{err:?}");
    }

    #[test]
    fn aliases_resolve() {
        let doc = parse("base: &h {Authorization: x}\nuse: *h\n").unwrap();
        assert_eq!(doc.value["use"]["Authorization"], Value::from("x"));
    }

    #[test]
    fn second_document_is_an_error() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn remove_prunes_a_key() {
        let mut doc = parse("a: {b: 1, c: 2}\n").unwrap();
        assert!(doc.remove(&FieldPath::root().key("a").key("b")));
        assert_eq!(doc.value, serde_json::json!({"a": {"c": 2}}));
        assert!(!doc.remove(&FieldPath::root().key("zz").key("b")));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Regression (config fuzzing): 100,000 nested `- ` overflowed the stack.
        let err = parse(&format!("{}x\n", "- ".repeat(100_000))).unwrap_err();
        assert!(err.message.contains("deeper than 64 levels"), "{err:?}");
        assert_eq!((err.loc.line, err.loc.col), (1, 129));
        assert!(parse(&format!("{}x\n", "- ".repeat(MAX_DEPTH))).is_ok());
    }

    #[test]
    fn aliases_cannot_nest_past_the_depth_limit() {
        let mut text = format!("a0: &a0 {}x{}\n", "[".repeat(40), "]".repeat(40));
        for i in 1..30 {
            text.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("deeper than 64"), "{err:?}");
    }

    #[test]
    fn billion_laughs_stop_at_the_alias_limit() {
        let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for (i, c) in "bcdefghi".chars().enumerate() {
            let items = vec![format!("*{}", (b'a' + i as u8) as char); 10].join(",");
            text.push_str(&format!("{c}: &{c} [{items}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("billion laughs"), "{err:?}");
        assert_eq!((err.loc.line, err.loc.col), (5, 29));
    }

    #[test]
    fn a_very_long_key_is_an_error() {
        let err = parse(&format!("? {}\n: 1\n", "k".repeat(MAX_KEY_CHARS + 1))).unwrap_err();
        assert!(err.message.contains("keys may be at most 1024"), "{err:?}");
        assert_eq!((err.loc.line, err.loc.col), (1, 3));
    }

    #[test]
    fn a_lone_carriage_return_is_an_error_at_its_place() {
        // Regression (config fuzzing): YAML counts a lone CR as a line break, so
        // positions after one pointed past the end of the file as `str::lines` sees it.
        let err = parse("name: a\nsteps: x\rb: 1\n").unwrap_err();
        assert!(err.message.contains("carriage return"), "{err:?}");
        assert_eq!((err.loc.line, err.loc.col), (2, 9));
        assert!(parse("name: a\r\nb: 1\r\n").is_ok());
    }

    #[test]
    fn positions_below_an_alias_fall_back_to_the_alias() {
        let doc = parse("h: &h {a: {b: 1}}\nuse: *h\n").unwrap();
        let p = FieldPath::root().key("use").key("a").key("b");
        let v = doc.locate(&p);
        assert_eq!((v.line, v.col), (2, 6));
        assert_eq!(doc.locate_key(&p), v);
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        let p = FieldPath::root().key("expect").key("json").key("$.id");
        assert_eq!(p.to_string(), "expect.json[\"$.id\"]");
    }
}
