//! Base64 (RFC 4648) in the forms skychat and the hypervisor use: base64url without padding
//! (skychat's invite links and group entries on the wire: strict, one canonical form) and
//! standard base64 with optional padding (the `Authorization: Basic` header, the WebSocket
//! handshake's `Sec-WebSocket-Key`), and standard base64 with padding out
//! (`Sec-WebSocket-Accept`). One decoder serves both alphabets.

/// Which alphabet: `-_` (URL-safe, §5) or `+/` (standard, §4) for the last two digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// `A–Z a–z 0–9 - _`.
    Url,
    /// `A–Z a–z 0–9 + /`.
    Std,
}

impl Alphabet {
    fn table(self) -> &'static [u8; 64] {
        match self {
            Alphabet::Url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            Alphabet::Std => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        }
    }

    fn value(self, c: u8) -> Option<u32> {
        let (d62, d63) = match self {
            Alphabet::Url => (b'-', b'_'),
            Alphabet::Std => (b'+', b'/'),
        };
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            _ if c == d62 => 62,
            _ if c == d63 => 63,
            _ => return None,
        } as u32)
    }
}

/// Encodes `b` without padding.
pub fn encode(b: &[u8], alphabet: Alphabet) -> String {
    let t = alphabet.table();
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | (x as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            s.push(t[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    s
}

/// Base64url without padding.
pub fn encode_url(b: &[u8]) -> String {
    encode(b, Alphabet::Url)
}

/// Standard base64 with `=` padding to a multiple of four characters.
pub fn encode_std_padded(b: &[u8]) -> String {
    let mut s = encode(b, Alphabet::Std);
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

/// Decodes unpadded base64 in `alphabet`; only the one canonical form of some bytes (unused
/// bits of the last digit zero) is accepted.
pub fn decode(s: &str, alphabet: Alphabet) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if b.len() % 4 == 1 {
        return Err(format!("{} characters is not a base64 length", b.len()));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3 + 2);
    for (ci, chunk) in b.chunks(4).enumerate() {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = alphabet.value(c).ok_or_else(|| {
                if c == b'=' {
                    "padding (`=`) is not used".to_string()
                } else {
                    format!("character {:?} at {}", c as char, ci * 4 + i)
                }
            })?;
            n |= v << (18 - 6 * i);
        }
        let bytes = chunk.len() * 6 / 8;
        if n & (0xff_ffff >> (8 * bytes)) != 0 {
            return Err("the last character has bits set that no encoder sets".into());
        }
        for i in 0..bytes {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

/// Base64url without padding, strict (see [`decode`]).
pub fn decode_url(s: &str) -> Result<Vec<u8>, String> {
    decode(s, Alphabet::Url)
}

/// Standard base64 with optional padding, at most 4,096 digits (an HTTP credential);
/// `None` on anything else.
pub fn decode_std_padded(s: &str) -> Option<Vec<u8>> {
    let digits = s.trim_end_matches('=');
    let pad = s.len() - digits.len();
    if digits.len() > 4096 || pad > 2 || (pad > 0 && !(digits.len() + pad).is_multiple_of(4)) {
        return None;
    }
    decode(digits, Alphabet::Std).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_strict() {
        for n in 0..40u8 {
            let b: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            for a in [Alphabet::Url, Alphabet::Std] {
                assert_eq!(decode(&encode(&b, a), a).unwrap(), b, "{n} bytes {a:?}");
            }
        }
        assert_eq!(encode_url(b"\xfb\xff"), "-_8");
        assert_eq!(encode(b"\xfb\xff", Alphabet::Std), "+/8");
        assert_eq!(encode_url(b"foobar"), "Zm9vYmFy");
        assert!(decode_url("Zm8=").is_err());
        assert!(decode_url("Zm9").is_err()); // unused bits set
        assert!(decode_url("Z").is_err());
        assert!(decode_url("Zm+v").is_err());
        assert!(decode("Zm-v", Alphabet::Std).is_err());
        assert!(decode_url("Zm é").is_err());
    }

    #[test]
    fn standard_with_padding() {
        assert_eq!(decode_std_padded("Zm8=").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_std_padded("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(decode_std_padded("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(decode_std_padded("+/8=").as_deref(), Some(&b"\xfb\xff"[..]));
        assert_eq!(decode_std_padded("Zg==="), None);
        assert_eq!(decode_std_padded("Zm8=="), None);
        assert_eq!(decode_std_padded("Z"), None);
        assert_eq!(decode_std_padded(&"A".repeat(4100)), None);
        assert_eq!(decode_std_padded("-_8"), None);
        assert_eq!(encode_std_padded(b"f"), "Zg==");
        assert_eq!(encode_std_padded(b"fo"), "Zm8=");
        assert_eq!(encode_std_padded(b"foo"), "Zm9v");
        assert_eq!(encode_std_padded(b""), "");
        for n in 0..20u8 {
            let b: Vec<u8> = (0..n).map(|i| i.wrapping_mul(91)).collect();
            assert_eq!(decode_std_padded(&encode_std_padded(&b)), Some(b));
        }
    }
}
