//! Synthetic test data that can never be mistaken for a real customer, and that carries a
//! tag a dealership can filter out of its reports.
//!
//! Tags: names contain `Rooftop-Synthetic`; e-mail is on `rooftop-synthetic.example`
//! (RFC 2606 reserved, undeliverable); phones are in the NANP fictional range 555-0100..0199;
//! VINs start `0RTSYNTH` (a `0` world-manufacturer prefix is assigned to no one); parts
//! start `RTSYN-`.

use rand::Rng;

/// The marker every synthetic text value contains.
pub const TAG: &str = "Rooftop-Synthetic";
/// Reserved e-mail domain for synthetic addresses.
pub const EMAIL_DOMAIN: &str = "rooftop-synthetic.example";
/// First eight characters of every synthetic VIN.
pub const VIN_PREFIX: &str = "0RTSYNTH";
/// Prefix of synthetic part numbers.
pub const PART_PREFIX: &str = "RTSYN-";

/// Helper names callable as `synthetic.NAME()` in templates.
pub const HELPERS: [&str; 8] = [
    "customer", "vin", "phone", "email", "part", "price", "note", "tag",
];

/// Per-run generator. Values are random (unique per call) but all carry the tag.
#[derive(Debug)]
pub struct Synthetic {
    run_id: String,
}

impl Synthetic {
    pub fn new(run_id: &str) -> Self {
        Synthetic {
            run_id: run_id.to_string(),
        }
    }

    /// Generates the value of helper `name`, or `None` for an unknown helper.
    pub fn generate(&self, name: &str) -> Option<String> {
        let mut rng = rand::rng();
        let token = random_token(&mut rng, 6);
        Some(match name {
            "customer" => format!("{TAG} Customer {token}"),
            "vin" => vin(&mut rng),
            "phone" => format!("+1202555{:04}", 100 + rng.random_range(0..100)),
            "email" => format!(
                "{}+{}@{EMAIL_DOMAIN}",
                TAG.to_ascii_lowercase(),
                token.to_ascii_lowercase()
            ),
            "part" => format!("{PART_PREFIX}{token}"),
            "price" => format!(
                "{}.{:02}",
                rng.random_range(10..500),
                rng.random_range(0..100)
            ),
            "note" => format!("{TAG} note {token} (run {})", self.run_id),
            "tag" => TAG.to_string(),
            _ => return None,
        })
    }
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ23456789";

fn random_token(rng: &mut impl Rng, len: usize) -> String {
    (0..len)
        .map(|_| TOKEN_CHARS[rng.random_range(0..TOKEN_CHARS.len())] as char)
        .collect()
}

/// A 17-character VIN with the synthetic prefix and a valid ISO 3779 / NA check digit.
fn vin(rng: &mut impl Rng) -> String {
    // Positions 10 (model year 2026 = T) and 11 (plant) are fixed; 12-17 are the serial.
    let serial: String = (0..6)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let mut v: Vec<char> = format!("{VIN_PREFIX}0TZ{serial}").chars().collect();
    v[8] = vin_check_digit(&v.iter().collect::<String>()).unwrap_or('X');
    v.into_iter().collect()
}

/// The check digit (position 9) for a 17-character VIN, or `None` if a character is not
/// allowed in a VIN (I, O and Q never are).
pub fn vin_check_digit(vin: &str) -> Option<char> {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    if vin.chars().count() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in vin.chars().zip(WEIGHTS) {
        sum += transliterate(c)? * w;
    }
    Some(match sum % 11 {
        10 => 'X',
        d => char::from_digit(d, 10)?,
    })
}

fn transliterate(c: char) -> Option<u32> {
    Some(match c.to_ascii_uppercase() {
        d @ '0'..='9' => d.to_digit(10)?,
        'A' | 'J' => 1,
        'B' | 'K' | 'S' => 2,
        'C' | 'L' | 'T' => 3,
        'D' | 'M' | 'U' => 4,
        'E' | 'N' | 'V' => 5,
        'F' | 'W' => 6,
        'G' | 'P' | 'X' => 7,
        'H' | 'Y' => 8,
        'R' | 'Z' => 9,
        _ => return None,
    })
}

/// True when a VIN's check digit is valid.
pub fn vin_is_valid(vin: &str) -> bool {
    vin_check_digit(vin).is_some_and(|d| vin.chars().nth(8) == Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_of_known_vins() {
        // Published examples with valid check digits.
        assert!(vin_is_valid("1M8GDM9AXKP042788"));
        assert!(vin_is_valid("11111111111111111"));
        assert!(vin_is_valid("1HGCM82633A004352"));
        assert!(!vin_is_valid("1HGCM82643A004352"));
        assert_eq!(
            vin_check_digit("1OOOOOOOOOOOOOOOO"),
            None,
            "O is never allowed"
        );
    }

    #[test]
    fn synthetic_vins_are_valid_and_tagged() {
        let s = Synthetic::new("r1");
        for _ in 0..200 {
            let v = s.generate("vin").unwrap();
            assert_eq!(v.len(), 17);
            assert!(v.starts_with(VIN_PREFIX));
            assert!(vin_is_valid(&v), "{v}");
            assert!(!v.contains(['I', 'O', 'Q']));
        }
    }

    #[test]
    fn every_text_helper_carries_the_tag() {
        let s = Synthetic::new("r1");
        for h in ["customer", "note", "tag"] {
            assert!(s.generate(h).unwrap().contains(TAG), "{h}");
        }
        assert!(
            s.generate("email")
                .unwrap()
                .ends_with("@rooftop-synthetic.example")
        );
        let phone = s.generate("phone").unwrap();
        assert!(phone.starts_with("+12025550") || phone.starts_with("+1202555010"));
        let n: u32 = phone[8..].parse().unwrap();
        assert!((100..200).contains(&n), "{phone}");
        assert!(s.generate("part").unwrap().starts_with(PART_PREFIX));
        assert!(s.generate("nope").is_none());
        assert_ne!(s.generate("customer"), s.generate("customer"));
    }
}
