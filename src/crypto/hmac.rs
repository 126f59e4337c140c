//! HMAC-SHA-512 (RFC 2104) and the Noise HKDF (Noise spec §4.3), built on salty's `Sha512`.
//!
//! SHA-512 has a 128-byte block and a 64-byte output (`HASHLEN`). The Noise HKDF is RFC 5869
//! with an empty `info` and the chaining key as the salt; it is written out here exactly as the
//! Noise spec states it rather than through a general HKDF, because Noise only ever asks for
//! two or three outputs.

use salty::Sha512;

/// SHA-512 output length (`HASHLEN` in the Noise spec).
pub const HASH_LEN: usize = 64;
/// SHA-512 block length (`BLOCKLEN` in the Noise spec).
pub const BLOCK_LEN: usize = 128;

/// Overwrites secret bytes with zeros (best effort: the optimiser is told the zeros are read).
pub(crate) fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    core::hint::black_box(&buf);
}

/// SHA-512 over the concatenation of `parts`.
pub fn sha512(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// HMAC-SHA-512 of the concatenation of `parts` under `key` (RFC 2104).
pub fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    // A key longer than the block is replaced by its hash; a shorter one is zero-padded.
    let mut block = [0u8; BLOCK_LEN];
    if key.len() > BLOCK_LEN {
        block[..HASH_LEN].copy_from_slice(&sha512(&[key]));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    // inner = H((K ^ ipad) || text)
    let mut pad = [0u8; BLOCK_LEN];
    for (p, k) in pad.iter_mut().zip(block.iter()) {
        *p = k ^ 0x36;
    }
    let mut inner = Sha512::new().updated(&pad);
    for p in parts {
        inner.update(p);
    }
    let inner = inner.finalize();
    // outer = H((K ^ opad) || inner)
    for (p, k) in pad.iter_mut().zip(block.iter()) {
        *p = k ^ 0x5c;
    }
    let out = Sha512::new().updated(&pad).updated(&inner).finalize();
    wipe(&mut block);
    wipe(&mut pad);
    out
}

/// `HKDF(chaining_key, input_key_material, 2)` from the Noise spec:
///
/// ```text
/// temp_key = HMAC-HASH(chaining_key, input_key_material)
/// output1  = HMAC-HASH(temp_key, byte(0x01))
/// output2  = HMAC-HASH(temp_key, output1 || byte(0x02))
/// ```
pub fn hkdf2(chaining_key: &[u8; HASH_LEN], ikm: &[u8]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let temp_key = hmac_sha512(chaining_key, &[ikm]);
    let out1 = hmac_sha512(&temp_key, &[&[0x01]]);
    let out2 = hmac_sha512(&temp_key, &[&out1, &[0x02]]);
    (out1, out2)
}

/// `HKDF(chaining_key, input_key_material, 3)` from the Noise spec: as [`hkdf2`], plus
/// `output3 = HMAC-HASH(temp_key, output2 || byte(0x03))`.
pub fn hkdf3(
    chaining_key: &[u8; HASH_LEN],
    ikm: &[u8],
) -> ([u8; HASH_LEN], [u8; HASH_LEN], [u8; HASH_LEN]) {
    let temp_key = hmac_sha512(chaining_key, &[ikm]);
    let out1 = hmac_sha512(&temp_key, &[&[0x01]]);
    let out2 = hmac_sha512(&temp_key, &[&out1, &[0x02]]);
    let out3 = hmac_sha512(&temp_key, &[&out2, &[0x03]]);
    (out1, out2, out3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    // RFC 4231 test cases 1, 2 and 6 (HMAC-SHA-512).
    #[test]
    fn rfc4231() {
        assert_eq!(
            hex::encode(&hmac_sha512(&[0x0b; 20], &[b"Hi There"])),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
        );
        assert_eq!(
            hex::encode(&hmac_sha512(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        assert_eq!(
            hex::encode(&hmac_sha512(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
        );
    }

    // Outputs computed independently with Python's hmac/hashlib, following the Noise text.
    #[test]
    fn noise_hkdf() {
        let mut ck = [0u8; HASH_LEN];
        for (i, b) in ck.iter_mut().enumerate() {
            *b = i as u8;
        }
        let (a, b, c) = hkdf3(&ck, &[0x42; 32]);
        assert_eq!(
            hex::encode(&a),
            "96c348e5ce371895c023bb79816ddd01e8e475bbf11200b6b6ec13bbe312234b\
             5ab39d4295f717bdcc8bd264dad787aaa7df2faee350ee8ec99d7da4545a76da"
        );
        assert_eq!(
            hex::encode(&b),
            "7bf1604e1c6f5f058b96dc98a8d544a278e9cb2bb36208841439b2cbaeaadf77\
             b7039591beed5d1b512b7c703f2b3fdbfd813ae5fd088f94640673abed3e7f31"
        );
        assert_eq!(
            hex::encode(&c),
            "904806c4a46a903247754f383b731625c9752d84844b357468df3a7e030994c7\
             905795aa65f5ffa73d3641c6132a6a7b2ef9a62bc9896a164d1b1a326eccc8dd"
        );
        assert_eq!(hkdf2(&ck, &[0x42; 32]), (a, b));
    }
}
