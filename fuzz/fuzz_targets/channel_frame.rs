//! The sans-IO channel framing the owned-frame codecs run (`FrameOpener` / `FrameSealer`, over
//! the `wire::noise` view): arbitrary bytes never panic the opener and never open (no frame
//! was sealed under its key), the length it announces matches the prefix, and any payload
//! sealed in place opens in place to the same bytes with the bytes after the frame untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::crypto::channel::{
    ChannelError, FrameOpener, FrameSealer, LEN_PREFIX, MAX_PAYLOAD_LEN,
};
use skywire::crypto::noise::CipherState;

fuzz_target!(|data: &[u8]| {
    let opener = FrameOpener::new(CipherState::new([9; 32]));
    match opener.frame_len(data) {
        Ok(Some(total)) => {
            assert_eq!(
                total,
                LEN_PREFIX + usize::from(u16::from_be_bytes([data[0], data[1]]))
            );
        }
        Ok(None) => assert!(data.len() < LEN_PREFIX),
        Err(_) => assert!(opener.is_failed()),
    }
    let mut raw = data.to_vec();
    let mut fresh = FrameOpener::new(CipherState::new([9; 32]));
    assert!(fresh.open_frame(&mut raw).is_err());
    assert!(fresh.is_failed());
    assert!(matches!(
        fresh.open_frame(&mut raw),
        Err(ChannelError::Failed)
    ));

    let mut sealer = FrameSealer::new(CipherState::new([3; 32]));
    let mut opener = FrameOpener::new(CipherState::new([3; 32]));
    let n = data.len().min(MAX_PAYLOAD_LEN);
    let mut f = vec![0u8; LEN_PREFIX];
    f.extend_from_slice(&data[..n]);
    sealer
        .seal_frame(&mut f, 0)
        .expect("a payload within the limit seals");
    let end = f.len();
    f.extend_from_slice(b"trailer");
    let k = opener.open_frame(&mut f).expect("a sealed frame opens");
    assert_eq!(&f[LEN_PREFIX..LEN_PREFIX + k], &data[..n]);
    assert_eq!(&f[end..], b"trailer");
});
