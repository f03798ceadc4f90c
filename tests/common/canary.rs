//! Secret canaries: unique values given to every secret source, and a search for them
//! (raw, percent-encoded, JSON-escaped, base64 alone and inside `Basic user:secret`) in
//! whatever the agent wrote. `find` names each output and form a canary turned up in.
#![allow(dead_code)]

/// One secret's canary value; `user` when it also travels as `Basic base64(user:value)`.
#[derive(Debug, Clone)]
pub struct Canary {
    pub name: &'static str,
    pub value: String,
    pub user: Option<&'static str>,
}

impl Canary {
    /// `cnry<name><pid>z9=`: `=` so the percent-encoded form differs from the raw one;
    /// the name and the process id so no other text contains it by chance.
    pub fn new(name: &'static str) -> Canary {
        Canary::with_tail(name, "")
    }

    /// [`Canary::new`] followed by `tail`: characters that URL parsers, template filters
    /// and form encoders each encode their own way (`/`, `+`, `~`, a space).
    pub fn with_tail(name: &'static str, tail: &str) -> Canary {
        Canary {
            name,
            value: format!("{}z9={tail}", Canary::stem(name)),
            user: None,
        }
    }

    /// The part of the value no encoding changes: found in any form that keeps it.
    fn stem(name: &str) -> String {
        format!("cnry{}{}", name.replace('_', ""), std::process::id())
    }

    pub fn with_user(mut self, user: &'static str) -> Canary {
        self.user = Some(user);
        self
    }

    /// Every form the value could take on the way out, with a label.
    pub fn forms(&self) -> Vec<(&'static str, String)> {
        let mut forms = vec![
            ("raw", self.value.clone()),
            ("percent-encoded", percent_encode(&self.value)),
            ("base64", base64(self.value.as_bytes(), STANDARD)),
            ("base64url", base64(self.value.as_bytes(), URL_SAFE)),
            // The start no encoding changes: any other encoding of the value, or the value
            // cut short.
            ("raw prefix", Canary::stem(self.name)),
        ];
        if let Some(user) = self.user {
            forms.push((
                "base64 user:secret",
                base64(format!("{user}:{}", self.value).as_bytes(), STANDARD),
            ));
            forms.push((
                "base64 \\0user\\0secret",
                base64(format!("\0{user}\0{}", self.value).as_bytes(), STANDARD),
            ));
        }
        forms
    }
}

/// One occurrence: where, which canary, in which form, and the text around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub output: String,
    pub canary: &'static str,
    pub form: &'static str,
    pub context: String,
}

impl std::fmt::Display for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: secret `{}` ({}) in …{}…",
            self.output, self.canary, self.form, self.context
        )
    }
}

/// Every occurrence of every canary's forms in `bytes` (read as raw bytes: a store page,
/// a WAL frame, a log line), at most a few per form.
pub fn find(output: &str, bytes: &[u8], canaries: &[Canary]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for c in canaries {
        for (form, needle) in c.forms() {
            let n = needle.as_bytes();
            let mut from = 0;
            let mut found = 0;
            while let Some(at) = bytes[from..]
                .windows(n.len())
                .position(|w| w == n)
                .map(|p| p + from)
            {
                let lo = at.saturating_sub(80);
                let hi = (at + n.len() + 80).min(bytes.len());
                hits.push(Hit {
                    output: output.to_string(),
                    canary: c.name,
                    form,
                    context: String::from_utf8_lossy(&bytes[lo..hi]).replace('\n', "⏎"),
                });
                found += 1;
                from = at + n.len();
                if found == 3 {
                    break;
                }
            }
        }
    }
    // The raw prefix is found wherever the raw value is: keep it only alone.
    let raw: Vec<(String, &str, String)> = hits
        .iter()
        .filter(|h| h.form == "raw")
        .map(|h| (h.output.clone(), h.canary, h.context.clone()))
        .collect();
    hits.retain(|h| {
        h.form != "raw prefix" || !raw.iter().any(|(o, c, _)| *o == h.output && *c == h.canary)
    });
    hits
}

/// RFC 3986 unreserved characters kept, everything else `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 without padding (a padded encoding contains this as its prefix).
pub fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes(), STANDARD), encoded);
    }
}
