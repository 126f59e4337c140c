//! Lowercase hex, the text form of keys and signatures (DESIGN.md §3.1).

use core::fmt;

/// Why a hex string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexError {
    /// The string had `got` characters; exactly `want` were needed.
    Length { want: usize, got: usize },
    /// The character at byte offset `at` is not a hex digit.
    Char { at: usize },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length { want, got } => {
                write!(f, "expected {want} hex characters, got {got}")
            }
            HexError::Char { at } => write!(f, "not a hex digit at position {at}"),
        }
    }
}

impl std::error::Error for HexError {}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into exactly `N` bytes.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let mut out = [0u8; N];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Decodes hex of any even length into a vector.
pub fn decode_vec(s: &str) -> Result<Vec<u8>, HexError> {
    if !s.len().is_multiple_of(2) {
        return Err(HexError::Length {
            want: s.len() + 1,
            got: s.len(),
        });
    }
    let mut out = vec![0u8; s.len() / 2];
    decode_into(s, &mut out)?;
    Ok(out)
}

/// Decodes hex into `out`, which fixes the expected length.
pub fn decode_into(s: &str, out: &mut [u8]) -> Result<(), HexError> {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return Err(HexError::Length {
            want: out.len() * 2,
            got: b.len(),
        });
    }
    for (i, o) in out.iter_mut().enumerate() {
        let hi = nibble(b[2 * i]).ok_or(HexError::Char { at: 2 * i })?;
        let lo = nibble(b[2 * i + 1]).ok_or(HexError::Char { at: 2 * i + 1 })?;
        *o = (hi << 4) | lo;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        assert_eq!(encode(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(decode_array::<3>("009FfF").unwrap(), [0x00, 0x9f, 0xff]);
        assert_eq!(decode_vec("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode_array::<2>("abc"),
            Err(HexError::Length { want: 4, got: 3 })
        );
        assert_eq!(decode_array::<2>("ab0g"), Err(HexError::Char { at: 3 }));
        assert!(decode_vec("abc").is_err());
        // Multi-byte UTF-8 must not panic on slicing.
        assert!(decode_array::<1>("é").is_err());
    }
}
