//! Acknowledging a page from the phone. Signed, expiring links:
//! `<base>/ack/<incident>?exp=<unix>&sig=<hex>` with `sig = HMAC-SHA256(key,
//! "<incident>.<exp>")`; the key is generated once and kept in the state directory (mode
//! 0600), so links survive restarts and cannot be forged without it. Following the link
//! shows a confirmation page; its button (a POST, so mail scanners that prefetch links do
//! not acknowledge) records the acknowledgement. And SMS replies: each incident's short
//! code (`Reply ACK 4821`), what a reply says (`parse_reply`) and which open pages it
//! acknowledges (`decide_reply`). Pure, apart from the key file: no network, no store.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long an ack link works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Signs and checks ack links.
#[derive(Clone)]
pub struct AckSigner {
    key: Vec<u8>,
    base_url: String,
}

impl std::fmt::Debug for AckSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckSigner")
            .field("base_url", &self.base_url)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AckSigner {
    pub fn new(key: Vec<u8>, base_url: &str) -> AckSigner {
        AckSigner {
            key,
            base_url: base_url.trim_end_matches('/').to_string(),
        }
    }

    /// The key in `state_dir/ack.key`, created (32 random bytes, mode 0600) if missing.
    pub fn load_or_create(state_dir: &Path, base_url: &str) -> std::io::Result<AckSigner> {
        let path = state_dir.join("ack.key");
        let key = match std::fs::read(&path) {
            Ok(k) if k.len() >= 32 => k,
            _ => {
                std::fs::create_dir_all(state_dir)?;
                let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
                let tmp = state_dir.join("ack.key.tmp");
                std::fs::write(&tmp, &key)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
                }
                std::fs::rename(&tmp, &path)?;
                key
            }
        };
        Ok(AckSigner::new(key, base_url))
    }

    fn signature(&self, incident: &str, exp: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{incident}.{exp}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The link for `incident`, valid until `now + LINK_LIFETIME`.
    pub fn link(&self, incident: &str, now: DateTime<Utc>) -> String {
        let exp = now.timestamp() + LINK_LIFETIME.as_secs() as i64;
        format!(
            "{}/ack/{incident}?exp={exp}&sig={}",
            self.base_url,
            self.signature(incident, exp)
        )
    }

    /// Whether `sig` is this key's signature of (`incident`, `exp`) and `exp` has not
    /// passed.
    pub fn verify(&self, incident: &str, exp: i64, sig: &str, now: DateTime<Utc>) -> bool {
        if exp < now.timestamp() {
            return false;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("{incident}.{exp}").as_bytes());
        let Some(bytes) = (0..sig.len())
            .step_by(2)
            .map(|i| {
                sig.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        mac.verify_slice(&bytes).is_ok()
    }
}

/// The code an SMS page asks to be replied with (`Reply ACK 4821`): four digits from
/// SHA-256 of the incident id, so every page of one incident (escalations, reminders,
/// restarts) shows the same code without storing it. Two open incidents may share one
/// (1 in 10 000 for a pair): a reply with it is then ambiguous and acknowledges neither.
pub fn ack_code(incident: &str) -> String {
    let digest = Sha256::digest(incident.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 10_000;
    format!("{n:04}")
}

/// `acked_by` of an acknowledgement by SMS reply.
pub fn sms_acked_by(contact: &str) -> String {
    format!("{contact} (SMS)")
}

/// What a text message means, when it is an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ACK`: every open page this person got by SMS.
    All,
    /// `ACK 4821`: the open page with that code (digits as typed, any length).
    Code(String),
}

/// Longest run of digits read as a code; anything longer is not an acknowledgement.
const MAX_CODE_DIGITS: usize = 8;

/// `ACK`, `ack 4821`, ` Ack  4821. `, `ACK4821`: case, surrounding spaces, spaces
/// between `ACK` and the code and trailing `.` or `!` do not matter. Anything else
/// (`ok`, `ACK later`, `ACKNOWLEDGED`) is `None`: not an acknowledgement.
pub fn parse_reply(body: &str) -> Option<Reply> {
    let text = body.trim_end_matches(|c: char| c == '.' || c == '!' || c.is_whitespace());
    let text = text.trim_start();
    let head = text.get(..3)?;
    if !head.eq_ignore_ascii_case("ack") {
        return None;
    }
    let rest = text[3..].trim_start();
    if rest.is_empty() {
        return Some(Reply::All);
    }
    (rest.len() <= MAX_CODE_DIGITS && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Reply::Code(rest.to_string()))
}

/// An SMS page that reached a contact (the provider accepted it) for an incident still
/// unresolved and unacknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPage {
    /// The paged incident (a group's leader: its acknowledgement covers the group).
    pub incident: String,
    /// The contact it went to.
    pub contact: String,
    /// When the provider accepted it.
    pub paged_at: DateTime<Utc>,
}

/// What a reply acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyDecision {
    /// These pages' incidents, each by the contact its page went to.
    Acknowledge(Vec<OpenPage>),
    /// `ACK`, and no open page of theirs was sent before it.
    NothingOpen,
    /// No open page of theirs has this code.
    UnknownCode(String),
    /// Several open pages of theirs have this code: none is acknowledged.
    Ambiguous {
        code: String,
        incidents: Vec<String>,
    },
}

/// How far the provider's clock (a reply's send time) may be behind the agent's (a
/// page's) when telling whether a bare `ACK` came after a page.
pub const REPLY_CLOCK_SLACK: chrono::Duration = chrono::Duration::seconds(60);

/// Which of `pages` (the open SMS pages of the replying contact) `reply`, sent at
/// `sent_at`, acknowledges. A bare `ACK` takes only pages sent before it: it cannot mean
/// a page it never saw. A code takes the one page with it.
pub fn decide_reply(reply: &Reply, pages: &[OpenPage], sent_at: DateTime<Utc>) -> ReplyDecision {
    let mut distinct: Vec<&OpenPage> = Vec::new();
    for p in pages {
        if !distinct.iter().any(|d| d.incident == p.incident) {
            distinct.push(p);
        }
    }
    match reply {
        Reply::All => {
            let before: Vec<OpenPage> = distinct
                .into_iter()
                .filter(|p| p.paged_at <= sent_at + REPLY_CLOCK_SLACK)
                .cloned()
                .collect();
            if before.is_empty() {
                ReplyDecision::NothingOpen
            } else {
                ReplyDecision::Acknowledge(before)
            }
        }
        Reply::Code(code) => {
            let matching: Vec<&OpenPage> = distinct
                .into_iter()
                .filter(|p| ack_code(&p.incident) == *code)
                .collect();
            match matching.as_slice() {
                [] => ReplyDecision::UnknownCode(code.clone()),
                [one] => ReplyDecision::Acknowledge(vec![(*one).clone()]),
                many => ReplyDecision::Ambiguous {
                    code: code.clone(),
                    incidents: many.iter().map(|p| p.incident.clone()).collect(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_incident() {
        let s = AckSigner::new(vec![7; 32], "http://rooftop.local:9464/");
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let link = s.link("inc-p-1", now);
        assert!(
            link.starts_with("http://rooftop.local:9464/ack/inc-p-1?exp="),
            "{link}"
        );
        let (exp, sig) = link
            .split_once("?exp=")
            .unwrap()
            .1
            .split_once("&sig=")
            .unwrap();
        let exp: i64 = exp.parse().unwrap();
        assert!(s.verify("inc-p-1", exp, sig, now));
        assert!(!s.verify("inc-p-2", exp, sig, now), "another incident");
        assert!(!s.verify("inc-p-1", exp + 1, sig, now), "another expiry");
        assert!(!s.verify("inc-p-1", exp, "00", now));
        assert!(
            !s.verify("inc-p-1", exp, sig, now + chrono::Duration::hours(25)),
            "expired"
        );
        let other = AckSigner::new(vec![8; 32], "http://rooftop.local:9464");
        assert!(!other.verify("inc-p-1", exp, sig, now), "another key");
        assert!(!format!("{s:?}").contains("7, 7"));
    }

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = AckSigner::load_or_create(dir.path(), "http://x").unwrap();
        let b = AckSigner::load_or_create(dir.path(), "http://x").unwrap();
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ack.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
    #[test]
    fn the_ack_code_is_four_digits_and_the_same_for_the_same_incident() {
        let a = ack_code("inc-lead-to-bdc-call-list-1790000000000");
        assert_eq!(a.len(), 4);
        assert!(a.bytes().all(|b| b.is_ascii_digit()), "{a}");
        assert_eq!(a, ack_code("inc-lead-to-bdc-call-list-1790000000000"));
        // Pinned: a page sent by one version is read by the next (the code is not stored).
        assert_eq!(ack_code("inc-p-1"), "2350");
        let codes: std::collections::BTreeSet<String> =
            (0..200).map(|i| ack_code(&format!("inc-p-{i}"))).collect();
        assert!(codes.len() > 190, "codes spread out: {}", codes.len());
    }

    #[test]
    fn replies_that_acknowledge_and_replies_that_do_not() {
        for (body, reply) in [
            ("ACK", Reply::All),
            ("ack", Reply::All),
            ("  Ack. ", Reply::All),
            ("ACK!", Reply::All),
            ("ack 4821", Reply::Code("4821".into())),
            (" Ack  4821. ", Reply::Code("4821".into())),
            ("ACK4821", Reply::Code("4821".into())),
            ("ACK\t0042\n", Reply::Code("0042".into())),
            ("ack 482", Reply::Code("482".into())),
        ] {
            assert_eq!(parse_reply(body), Some(reply), "{body:?}");
        }
        for body in [
            "",
            "ok",
            "on my way",
            "ACKNOWLEDGED",
            "ack later",
            "ACK 4821 thanks",
            "ACK 48 21",
            "ACK #4821",
            "ACK 123456789",
            "NACK",
            "a",
            "é",
            "STOP",
        ] {
            assert_eq!(parse_reply(body), None, "{body:?}");
        }
    }

    fn page(incident: &str, contact: &str, at: DateTime<Utc>) -> OpenPage {
        OpenPage {
            incident: incident.into(),
            contact: contact.into(),
            paged_at: at,
        }
    }

    #[test]
    fn a_code_acknowledges_its_page_only_and_an_unknown_or_shared_code_nothing() {
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let pages = vec![
            page("inc-a-1", "Maria Lopez", t0),
            page("inc-b-2", "Maria Lopez", t0),
            // The same incident paged again (escalation round): one acknowledgement.
            page("inc-a-1", "Maria Lopez", t0 + chrono::Duration::minutes(5)),
        ];
        let code = ack_code("inc-a-1");
        assert_eq!(
            decide_reply(&Reply::Code(code), &pages, t0),
            ReplyDecision::Acknowledge(vec![pages[0].clone()])
        );
        let other = (0..10_000)
            .map(|n| format!("{n:04}"))
            .find(|c| *c != ack_code("inc-a-1") && *c != ack_code("inc-b-2"))
            .unwrap();
        assert_eq!(
            decide_reply(&Reply::Code(other.clone()), &pages, t0),
            ReplyDecision::UnknownCode(other)
        );
        assert_eq!(
            decide_reply(&Reply::Code("482".into()), &pages, t0),
            ReplyDecision::UnknownCode("482".into())
        );
        // Two open incidents whose codes collide.
        let (x, y) = (0..)
            .map(|i| format!("inc-x-{i}"))
            .find_map(|x| {
                (0..400)
                    .map(|j| format!("inc-y-{j}"))
                    .find(|y| ack_code(y) == ack_code(&x))
                    .map(|y| (x, y))
            })
            .unwrap();
        let shared = vec![page(&x, "Dev Patel", t0), page(&y, "Dev Patel", t0)];
        assert_eq!(
            decide_reply(&Reply::Code(ack_code(&x)), &shared, t0),
            ReplyDecision::Ambiguous {
                code: ack_code(&x),
                incidents: vec![x, y],
            }
        );
        assert_eq!(
            decide_reply(&Reply::Code(ack_code("inc-a-1")), &[], t0),
            ReplyDecision::UnknownCode(ack_code("inc-a-1"))
        );
    }

    #[test]
    fn a_bare_ack_acknowledges_every_open_page_sent_before_it() {
        let t0: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let later = t0 + chrono::Duration::minutes(10);
        let pages = vec![
            page("inc-a-1", "Maria Lopez", t0),
            page("inc-b-2", "Maria", t0 + chrono::Duration::seconds(30)),
            page("inc-c-3", "Maria Lopez", later),
        ];
        let reply_at = t0 + chrono::Duration::minutes(1);
        assert_eq!(
            decide_reply(&Reply::All, &pages, reply_at),
            ReplyDecision::Acknowledge(pages[..2].to_vec()),
            "not the page sent after the reply"
        );
        // The provider's clock a little behind: still after the page.
        assert_eq!(
            decide_reply(
                &Reply::All,
                &pages[2..],
                later - chrono::Duration::seconds(20)
            ),
            ReplyDecision::Acknowledge(pages[2..].to_vec())
        );
        assert_eq!(
            decide_reply(&Reply::All, &pages[2..], t0),
            ReplyDecision::NothingOpen
        );
        assert_eq!(
            decide_reply(&Reply::All, &[], t0),
            ReplyDecision::NothingOpen
        );
        assert_eq!(sms_acked_by("Maria Lopez"), "Maria Lopez (SMS)");
    }
}
