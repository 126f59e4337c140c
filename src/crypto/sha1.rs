//! SHA-1 (FIPS 180-4 §6.1), **only** for the WebSocket handshake's `Sec-WebSocket-Accept`
//! value (RFC 6455 §4.2.2), which the protocol defines with it. SHA-1 is broken for collision
//! resistance: never use this for anything that needs security (signatures, integrity, keys,
//! passwords). The handshake only proves that the server read the client's key.
//!
//! Small and slow on purpose (one block at a time, no unrolling): it hashes about 60 bytes
//! per WebSocket connection.

/// Output length in bytes.
pub const HASH_LEN: usize = 20;
/// Block length in bytes.
const BLOCK_LEN: usize = 64;

/// The initial hash value H(0) (FIPS 180-4 §5.3.1).
const H0: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// An incremental SHA-1: [`Sha1::update`] any number of times, then [`Sha1::finalize`].
#[derive(Clone, Debug)]
pub struct Sha1 {
    h: [u32; 5],
    /// The bytes of a block not yet compressed (`fill` of them are valid).
    block: [u8; BLOCK_LEN],
    fill: usize,
    /// Message length so far, in bytes (the padding encodes it in bits, mod 2^64).
    len: u64,
}

impl Default for Sha1 {
    fn default() -> Self {
        Sha1::new()
    }
}

impl Sha1 {
    /// A fresh hash.
    pub fn new() -> Sha1 {
        Sha1 {
            h: H0,
            block: [0; BLOCK_LEN],
            fill: 0,
            len: 0,
        }
    }

    /// Absorbs `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let take = (BLOCK_LEN - self.fill).min(data.len());
            let (head, rest) = data.split_at(take);
            self.block[self.fill..self.fill + take].copy_from_slice(head);
            self.fill += take;
            data = rest;
            if self.fill == BLOCK_LEN {
                compress(&mut self.h, &self.block);
                self.fill = 0;
            }
        }
    }

    /// The digest of everything absorbed.
    pub fn finalize(mut self) -> [u8; HASH_LEN] {
        // §5.1.1: a 1 bit, zeros to 56 mod 64 bytes, then the length in bits (64-bit BE).
        let bits = self.len.wrapping_mul(8);
        self.block[self.fill] = 0x80;
        self.block[self.fill + 1..].fill(0);
        if self.fill >= BLOCK_LEN - 8 {
            compress(&mut self.h, &self.block);
            self.block = [0; BLOCK_LEN];
        }
        self.block[BLOCK_LEN - 8..].copy_from_slice(&bits.to_be_bytes());
        compress(&mut self.h, &self.block);
        let mut out = [0u8; HASH_LEN];
        for (o, w) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// SHA-1 of the concatenation of `parts`.
pub fn sha1(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The SHA-1 compression function on one 512-bit block (FIPS 180-4 §6.1.2).
fn compress(h: &mut [u32; 5], block: &[u8; BLOCK_LEN]) {
    // 1. The message schedule W0..W79.
    let mut w = [0u32; 80];
    for (wt, b) in w.iter_mut().zip(block.chunks_exact(4)) {
        *wt = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    // 2. The working variables from the previous hash value.
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    // 3. Eighty rounds, in four stages of twenty with their own f_t and K_t (§4.1.1, §4.2.1).
    for (t, &wt) in w.iter().enumerate() {
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
            20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
            _ => (b ^ c ^ d, 0xca62_c1d6),
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(wt);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
    }
    // 4. The intermediate hash value H(i).
    for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
        *hi = hi.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;

    fn hash_hex(data: &[u8]) -> String {
        hex::encode(&sha1(&[data]))
    }

    #[test]
    fn fips_180_examples() {
        assert_eq!(hash_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hash_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let m = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(m.len(), 56);
        assert_eq!(hash_hex(m), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn a_million_a() {
        // Fed in uneven pieces, so block boundaries fall inside `update` calls.
        let a = [b'a'; 1000];
        let mut h = Sha1::new();
        let mut left = 1_000_000usize;
        let mut step = 1;
        while left > 0 {
            let n = step.min(left).min(a.len());
            h.update(&a[..n]);
            left -= n;
            step = step % 997 + 7;
        }
        assert_eq!(
            hex::encode(&h.finalize()),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn every_padding_length() {
        // Lengths around the 55/56/64-byte padding edges: one-shot equals byte-by-byte.
        for n in 0..=130usize {
            let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let mut h = Sha1::new();
            for b in &data {
                h.update(core::slice::from_ref(b));
            }
            assert_eq!(h.finalize(), sha1(&[&data]), "{n} bytes");
        }
        // Two known edges: 55 and 64 'a's.
        assert_eq!(
            hash_hex(&[b'a'; 55]),
            "c1c8bbdc22796e28c0e15163d20899b65621d65a"
        );
        assert_eq!(
            hash_hex(&[b'a'; 64]),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
    }
}
