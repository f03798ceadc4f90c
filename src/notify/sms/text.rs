//! The page as a text message: plain GSM-7 (typographic characters transliterated,
//! links percent-encoded), at most three segments, always ending with the runbook link
//! whole; a page that can be acknowledged says how to by reply (`Reply ACK 4821.`).
//! Pure text: no I/O, nothing of Twilio.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::alerting::ack::ack_code;
use crate::notify::{Notice, NoticeKind};

/// Longest text sent, in GSM-7 septets (an extension-table character counts 2). Twilio
/// splits anything over 160 into concatenated segments of 153, so this is 3 segments.
pub const SMS_MAX_SEPTETS: usize = 320;

/// The description is cut to at least this many septets before the ack link is dropped:
/// knowing what broke matters more than acknowledging from the text.
const MIN_DESCRIPTION_SEPTETS: usize = 120;

/// GSM 03.38 basic character set (the escape code left out).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// GSM 03.38 extension table (each sent as escape + character: 2 septets). Form feed left
/// out: it has no place in a page.
const GSM7_EXTENSION: &str = "^{}\\[~]|€";

/// Septets `c` takes in GSM-7, `None` when it has no GSM-7 form.
fn char_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Length of `s` in GSM-7 septets, `None` when some character has no GSM-7 form.
pub fn gsm7_septets(s: &str) -> Option<usize> {
    s.chars().map(char_septets).sum()
}

/// `s` in GSM-7: typographic punctuation to its ASCII form, accented letters without a
/// GSM-7 form to their base letter, anything else to `?`. Whitespace runs (newlines too)
/// become one space.
pub fn to_gsm7(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        for c in word.chars() {
            if char_septets(c).is_some() {
                out.push(c);
            } else {
                out.push_str(transliterate(c));
            }
        }
    }
    out
}

/// The GSM-7 stand-in for a character outside GSM-7.
fn transliterate(c: char) -> &'static str {
    match c {
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => "\"",
        '‘' | '’' | '‚' | '‛' | '′' | '`' | '´' => "'",
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => "-",
        '…' => "...",
        '•' | '·' => "*",
        '×' => "x",
        '÷' | '⁄' => "/",
        '→' => "->",
        '←' => "<-",
        '©' => "(c)",
        '®' => "(R)",
        '™' => "TM",
        'á' | 'â' | 'ã' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ā' | 'Ă' | 'Ą' => "A",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ď' | 'đ' | 'ð' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'Ê' | 'Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ł' => "L",
        'ń' | 'ņ' | 'ň' => "n",
        'Ń' | 'Ņ' | 'Ň' => "N",
        'ó' | 'ô' | 'õ' | 'ō' | 'ŏ' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'œ' => "oe",
        'Œ' => "OE",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' | 'Ș' => "S",
        'ţ' | 'ť' | 'ț' => "t",
        'Ţ' | 'Ť' | 'Ț' => "T",
        'ú' | 'û' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'þ' => "th",
        'Þ' => "Th",
        _ => "?",
    }
}

/// What a link must not carry as it is: bytes outside printable ASCII (always encoded),
/// the space and the backtick, the one printable ASCII character without a GSM-7 form.
const NOT_GSM7_IN_URL: &AsciiSet = &CONTROLS.add(b' ').add(b'`');

/// A link in GSM-7 that still works: characters without a GSM-7 form (non-ASCII, the
/// backtick, spaces) percent-encoded as UTF-8, as browsers would.
fn gsm7_url(url: &str) -> String {
    utf8_percent_encode(url.trim(), NOT_GSM7_IN_URL).to_string()
}

/// The text message for `notice` as the agent sends it while it reads replies
/// (`alerting.sms.replies`, on by default): see [`sms_text_with`].
pub fn sms_text(notice: &Notice) -> String {
    sms_text_with(notice, true)
}

/// The text message for `notice`: at most [`SMS_MAX_SEPTETS`] GSM-7 septets, ending with
/// the runbook link, whole. The description (severity, kind, rooftop, probe, connector,
/// since when, why, error class and step) is cut with `...` to make room. A trigger or
/// flapping page with `reply_code` says `Reply ACK <code>.` right after the description,
/// always (16 septets: the quickest way to acknowledge); its ack link comes before the
/// runbook link only while the description keeps at least 120 septets. A runbook link
/// longer than the whole budget is still sent whole (Twilio takes up to 1600
/// characters): an unusable link would be worse than a fourth segment.
pub fn sms_text_with(notice: &Notice, reply_code: bool) -> String {
    let runbook = notice
        .runbook_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|u| format!("Runbook: {}", gsm7_url(u)));
    let (reply, ack) = match notice.kind {
        NoticeKind::Trigger | NoticeKind::Flapping => (
            reply_code.then(|| format!("Reply ACK {}.", ack_code(&notice.incident_id))),
            notice
                .ack_url
                .as_deref()
                .filter(|u| !u.trim().is_empty())
                .map(|u| format!("Ack: {}", gsm7_url(u))),
        ),
        NoticeKind::Acknowledge | NoticeKind::Resolve => (None, None),
    };
    compose(
        &describe(notice),
        reply.as_deref(),
        ack.as_deref(),
        runbook.as_deref(),
    )
}

/// What happened, in GSM-7, untruncated.
fn describe(notice: &Notice) -> String {
    let kind = match notice.kind {
        NoticeKind::Trigger => "TRIGGER",
        NoticeKind::Flapping => "FLAPPING",
        NoticeKind::Acknowledge => "ACKED",
        NoticeKind::Resolve => "RESOLVED",
    };
    let mut s = format!(
        "[{}] {kind} {}: {} on {}",
        notice.severity,
        notice.rooftop_label(),
        notice.probe,
        notice.connector
    );
    if !notice.also_affected.is_empty() {
        let _ = write!(s, " (+{} more)", notice.also_affected.len());
    }
    if !notice.dependents.is_empty() {
        let _ = write!(s, " (+{} depending on it)", notice.dependents.len());
    }
    // Escalated / reminder / inside a change window: the first thing after the probe.
    if let Some(note) = notice.notes.first() {
        let _ = write!(s, ". {}", note.trim_end_matches('.'));
    }
    let _ = write!(s, " since {} UTC", notice.opened_at.format("%H:%M"));
    if let (NoticeKind::Resolve, Some(at)) = (notice.kind, notice.resolved_at) {
        let _ = write!(s, ", resolved {} UTC", at.format("%H:%M"));
    }
    if !notice.reason.trim().is_empty() {
        let _ = write!(s, " - {}.", notice.reason.trim().trim_end_matches('.'));
    } else {
        s.push('.');
    }
    match (notice.error_class.as_deref(), notice.failed_step.as_deref()) {
        (Some(class), Some(step)) => {
            let _ = write!(s, " {class} at {step}.");
        }
        (Some(class), None) => {
            let _ = write!(s, " {class}.");
        }
        (None, Some(step)) => {
            let _ = write!(s, " Failed at {step}.");
        }
        (None, None) => {}
    }
    to_gsm7(&s)
}

/// `description [reply] [ack] [runbook]` within the budget (see [`sms_text_with`]).
fn compose(
    description: &str,
    reply: Option<&str>,
    ack: Option<&str>,
    runbook: Option<&str>,
) -> String {
    let len = |s: &str| gsm7_septets(s).unwrap_or(s.chars().count());
    let kept = [runbook, reply]
        .into_iter()
        .flatten()
        .map(|p| len(p) + 1)
        .sum();
    let mut budget = SMS_MAX_SEPTETS.saturating_sub(kept);
    let wanted = len(description).min(MIN_DESCRIPTION_SEPTETS);
    let ack = ack.filter(|a| budget.saturating_sub(len(a) + 1) >= wanted);
    budget = budget.saturating_sub(ack.map_or(0, |a| len(a) + 1));
    let description = truncate_septets(description, budget);
    [Some(description.as_str()), reply, ack, runbook]
        .into_iter()
        .flatten()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` (GSM-7) cut to at most `max` septets, marked with `...` when cut.
fn truncate_septets(s: &str, max: usize) -> String {
    if gsm7_septets(s).is_some_and(|n| n <= max) {
        return s.to_string();
    }
    if max < 4 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let n = char_septets(c).unwrap_or(1);
        if used + n > max - 3 {
            break;
        }
        used += n;
        out.push(c);
    }
    let mut out = out.trim_end().to_string();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::sample_notice;

    fn septets(s: &str) -> usize {
        gsm7_septets(s).expect("text is GSM-7")
    }

    #[test]
    fn the_gsm7_tables_have_the_standard_sizes() {
        assert_eq!(GSM7_BASIC.chars().count(), 127);
        assert_eq!(GSM7_EXTENSION.chars().count(), 9);
    }

    #[test]
    fn sample_trigger_reads_well_and_ends_with_the_runbook() {
        let n = sample_notice(NoticeKind::Trigger);
        assert_eq!(ack_code(&n.incident_id), "4612");
        let text = sms_text(&n);
        assert_eq!(
            text,
            "[P2] TRIGGER Toronto North Honda: appointment-to-ro-to-survey on crm-to-dms since \
             14:13 UTC - 2 failed runs in a row. sync_timeout at ro-in-dms. Reply ACK 4612. \
             Ack: http://127.0.0.1:9464/ack/inc-1?sig=abc \
             Runbook: https://runbooks.example/runbooks/ro-not-created.md"
        );
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
    }

    #[test]
    fn without_replies_there_is_no_reply_code() {
        let text = sms_text_with(&sample_notice(NoticeKind::Trigger), false);
        assert_eq!(
            text,
            "[P2] TRIGGER Toronto North Honda: appointment-to-ro-to-survey on crm-to-dms since \
             14:13 UTC - 2 failed runs in a row. sync_timeout at ro-in-dms. \
             Ack: http://127.0.0.1:9464/ack/inc-1?sig=abc \
             Runbook: https://runbooks.example/runbooks/ro-not-created.md"
        );
    }

    #[test]
    fn resolve_says_when_and_has_no_ack_link() {
        let mut n = sample_notice(NoticeKind::Resolve);
        n.resolved_at = Some(n.opened_at + chrono::Duration::minutes(27));
        let text = sms_text(&n);
        assert!(
            text.starts_with("[P2] RESOLVED Toronto North Honda:"),
            "{text}"
        );
        assert!(
            text.contains("since 14:13 UTC, resolved 14:40 UTC"),
            "{text}"
        );
        assert!(!text.contains("Ack:"), "{text}");
        assert!(!text.contains("Reply ACK"), "{text}");
        assert!(text.ends_with("Runbook: https://runbooks.example/runbooks/ro-not-created.md"));
        let acked = sms_text(&sample_notice(NoticeKind::Acknowledge));
        assert!(!acked.contains("Reply ACK"), "{acked}");
    }

    #[test]
    fn flapping_is_named() {
        let text = sms_text(&sample_notice(NoticeKind::Flapping));
        assert!(text.starts_with("[P2] FLAPPING "), "{text}");
        assert!(text.contains(" Reply ACK 4612. Ack: "), "{text}");
    }

    #[test]
    fn non_gsm_text_is_transliterated() {
        assert_eq!(to_gsm7("“quoted” — it’s…"), "\"quoted\" - it's...");
        assert_eq!(
            to_gsm7("Brossard Hyundai: Québec, Montréal, Lévis, Château, façade"),
            "Brossard Hyundai: Québec, Montréal, Lévis, Chateau, facade"
        );
        assert_eq!(to_gsm7("Œuvre Łódź ÿ"), "OEuvre Lodz y");
        assert_eq!(to_gsm7("ok 🚗 車"), "ok ? ?");
        assert_eq!(to_gsm7("line\none\t\u{a0}two  three"), "line one two three");
        // GSM-7 letters stay as they are.
        assert_eq!(to_gsm7("Müller Søren Ñandú"), "Müller Søren Ñandu");
    }

    #[test]
    fn long_non_gsm_notice_is_cut_to_320_septets_and_keeps_the_runbook_link_whole() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.rooftop_name = Some("Concession Élégante “Saint‑Jérôme” 🚗 — Toyota".into());
        n.reason = "ligne ‘rendez‑vous’ → RO {timeout} [DMS] … ".repeat(20);
        n.runbook_url = Some("https://runbooks.example/runbooks/ro-not-created.md#étape-2".into());
        let text = sms_text(&n);
        let len = septets(&text);
        assert!(len <= SMS_MAX_SEPTETS, "{len}: {text}");
        assert!(len >= SMS_MAX_SEPTETS - 3, "uses the room it has: {len}");
        assert!(
            text.ends_with(
                " Runbook: https://runbooks.example/runbooks/ro-not-created.md#%C3%A9tape-2"
            ),
            "{text}"
        );
        // Cut with `...`; the reply code stays whole after it.
        assert!(
            text.contains(&format!("... Reply ACK {}. ", ack_code(&n.incident_id))),
            "{text}"
        );
        assert!(
            text.starts_with("[P2] TRIGGER Concession Élégante \"Saint-Jérome\" ? - Toyota: "),
            "{text}"
        );
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(gsm7_septets("{x}"), Some(5));
        assert_eq!(gsm7_septets("€"), Some(2));
        assert_eq!(gsm7_septets("é"), Some(1));
        assert_eq!(gsm7_septets("ê"), None);
        let s = "[{}]".repeat(100);
        let cut = truncate_septets(&s, 50);
        assert!(septets(&cut) <= 50, "{cut}");
        assert!(cut.ends_with("..."));
    }

    #[test]
    fn the_ack_link_goes_before_the_description_is_cut_short() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.reason = "x ".repeat(300);
        n.ack_url = Some(format!(
            "https://agent.example/ack/{}?sig={}",
            n.incident_id,
            "f".repeat(64)
        ));
        let text = sms_text(&n);
        assert!(!text.contains("Ack:"), "{text}");
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
        // A shorter ack link fits next to 120+ septets of description.
        n.ack_url = Some("https://agent.example/ack/1?sig=ab".into());
        let text = sms_text(&n);
        assert!(
            text.contains("... Reply ACK 4612. Ack: https://agent.example/ack/1?sig=ab Runbook: "),
            "{text}"
        );
        assert!(septets(&text) <= SMS_MAX_SEPTETS);
    }

    #[test]
    fn a_link_longer_than_the_budget_is_still_sent_whole() {
        let mut n = sample_notice(NoticeKind::Trigger);
        let url = format!("https://runbooks.example/{}", "a".repeat(400));
        n.runbook_url = Some(url.clone());
        let text = sms_text(&n);
        assert_eq!(text, format!("Reply ACK 4612. Runbook: {url}"));
        assert_eq!(sms_text_with(&n, false), format!("Runbook: {url}"));
    }

    #[test]
    fn without_a_runbook_the_description_has_the_room() {
        let mut n = sample_notice(NoticeKind::Trigger);
        n.runbook_url = None;
        n.ack_url = None;
        n.reason = "slow ".repeat(100);
        let text = sms_text_with(&n, false);
        assert_eq!(septets(&text), SMS_MAX_SEPTETS);
        assert!(text.ends_with("..."));
        // With the reply code after it, the cut may land on a space, which is dropped.
        let text = sms_text(&n);
        let len = septets(&text);
        assert!(
            (SMS_MAX_SEPTETS - 1..=SMS_MAX_SEPTETS).contains(&len),
            "{len}: {text}"
        );
        assert!(text.ends_with("... Reply ACK 4612."), "{text}");
    }

    #[test]
    fn links_are_made_gsm7_without_breaking_them() {
        assert_eq!(
            gsm7_url(" https://x.example/a b/é`q "),
            "https://x.example/a%20b/%C3%A9%60q"
        );
        assert_eq!(
            gsm7_url("https://x.example/p?a=1&b=[2]"),
            "https://x.example/p?a=1&b=[2]"
        );
    }
}
