//! Enums stored as text (in SQLite, in JSON): one spelling each way, and reading a value
//! the program does not know is an error that names it (a newer agent wrote it, or the
//! file was edited), never a guess or a panic.

/// A stored value the program does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {})", expected.join(", "))]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// `as_str`, `Display` and a `FromStr` naming an unknown value, for an enum whose
/// variants are stored as the given texts.
macro_rules! stored_as_text {
    ($ty:ident, $what:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so widths and alignment apply as they do to the text.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::model::UnknownValue;

            fn from_str(s: &str) -> Result<$ty, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err($crate::model::UnknownValue {
                        what: $what,
                        value: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}
pub(crate) use stored_as_text;

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq)]
    enum Light {
        Red,
        Green,
    }
    stored_as_text!(Light, "light", Red => "red", Green => "green");

    #[test]
    fn a_stored_text_reads_back_and_an_unknown_one_is_named() {
        assert_eq!("green".parse::<Light>(), Ok(Light::Green));
        assert_eq!(format!("{:<5}|", Light::Red), "red  |");
        let e = "blue".parse::<Light>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown light "blue" (expected one of: red, green)"#
        );
    }
}
