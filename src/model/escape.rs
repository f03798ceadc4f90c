//! Text escaped for where it is written: HTML (pages, e-mail bodies) and URI components
//! (paths, queries). One definition each, so a page and a mask agree on the bytes.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URI component: all but unreserved characters percent-encoded as UTF-8
/// (what `encodeURIComponent`-style serialisers produce for a path segment or a value).
pub fn encode_uri_component(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// `s` safe inside HTML text and double-quoted attributes: `&`, `<`, `>` and `"`.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_components_keep_only_unreserved_characters() {
        assert_eq!(encode_uri_component("SM a/b~"), "SM%20a%2Fb~");
        assert_eq!(encode_uri_component("ab+c/d=\"q"), "ab%2Bc%2Fd%3D%22q");
        assert_eq!(encode_uri_component("A-z_0.9~"), "A-z_0.9~");
        assert_eq!(encode_uri_component("é*"), "%C3%A9%2A");
    }

    #[test]
    fn html_special_characters_are_escaped_and_the_ampersand_first() {
        assert_eq!(
            escape_html(r#"<a href="x">Tom & Jerry's</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry's&lt;/a&gt;"
        );
        assert_eq!(escape_html("&lt;"), "&amp;lt;");
        assert_eq!(escape_html("plain"), "plain");
    }
}
