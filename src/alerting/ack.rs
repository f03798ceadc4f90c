//! Signed, expiring acknowledge links for pages: `<base>/ack/<incident>?exp=<unix>&sig=<hex>`
//! with `sig = HMAC-SHA256(key, "<incident>.<exp>")`. The key is generated once and kept
//! in the state directory (mode 0600), so links survive restarts and cannot be forged
//! without it. Following the link shows a confirmation page; its button (a POST, so mail
//! scanners that prefetch links do not acknowledge) records the acknowledgement.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
}
