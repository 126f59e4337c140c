"""An independent Noise peer for tests/noise_interop.rs, built on PyPI's `noiseprotocol`.

It connects to 127.0.0.1:PORT and runs skywire-rs's handshake (DESIGN.md §3.2-3.3) in the
given role, using only the spec and the identity conventions — no code of ours:

  * Noise statics come from Ed25519 identities: X25519 secret = clamp(SHA-512(seed)[0:32]),
    X25519 public = the Edwards->Montgomery map u = (1 + y) / (1 - y) mod p of the PK.
  * Prologue b"skywire-rs/1"; every handshake payload is empty except XK message 3, which
    carries the initiator's 32-byte Ed25519 PK (the responder checks that it maps to the static
    it authenticated).
  * Every message on the stream is `u16 big-endian length || bytes`.

After the handshake: it sends a greeting, then for each message the Rust side sends it answers
with SHA-512(message) until it receives b"bye", then prints `hash <handshake hash hex>` and
`count <messages answered>` and exits 0. Any failure exits non-zero with the reason on stderr.

usage: noise_peer.py XK|KK initiator|responder PORT MY_SEED_HEX [REMOTE_PK_HEX]
"""

import hashlib
import socket
import struct
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from noise.connection import Keypair, NoiseConnection

P = 2**255 - 19


def ed25519_pk_to_x25519(pk: bytes) -> bytes:
    y = int.from_bytes(pk, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % P, P - 2, P) % P
    return u.to_bytes(32, "little")


def ed25519_seed_to_x25519(seed: bytes) -> bytes:
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack(">H", recv_exact(sock, 2))
    return recv_exact(sock, n)


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(struct.pack(">H", len(data)) + data)


def main() -> int:
    pattern, role, port, my_seed_hex = sys.argv[1:5]
    remote_pk = bytes.fromhex(sys.argv[5]) if len(sys.argv) > 5 else None
    seed = bytes.fromhex(my_seed_hex)
    my_pk = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    initiator = role == "initiator"

    noise = NoiseConnection.from_name(f"Noise_{pattern}_25519_ChaChaPoly_SHA512".encode())
    if initiator:
        noise.set_as_initiator()
    else:
        noise.set_as_responder()
    noise.set_prologue(b"skywire-rs/1")
    noise.set_keypair_from_private_bytes(Keypair.STATIC, ed25519_seed_to_x25519(seed))
    if remote_pk is not None:
        noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, ed25519_pk_to_x25519(remote_pk))
    noise.start_handshake()
    # Kept before the last read: noiseprotocol drops it when the handshake completes, and an
    # XK responder needs the authenticated remote static afterwards.
    hs = noise.noise_protocol.handshake_state

    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
    count = 3 if pattern == "XK" else 2
    for i in range(count):
        my_turn = (i % 2 == 0) == initiator
        if my_turn:
            payload = my_pk if (pattern == "XK" and i == 2) else b""
            send_frame(sock, noise.write_message(payload))
        else:
            payload = noise.read_message(recv_frame(sock))
            if pattern == "XK" and i == 2:
                if len(payload) != 32:
                    raise ValueError(f"XK message 3 payload is {len(payload)} bytes, want 32")
                if ed25519_pk_to_x25519(bytes(payload)) != hs.rs.public_bytes:
                    raise ValueError("XK message 3 PK does not map to the authenticated static")
                remote_pk = bytes(payload)
            elif len(payload) != 0:
                raise ValueError(f"handshake message {i + 1} has a {len(payload)}-byte payload")
    if not noise.handshake_finished:
        raise RuntimeError("handshake not finished after all messages")

    send_frame(sock, noise.encrypt(b"hello from python " + remote_pk.hex().encode()))
    answered = 0
    while True:
        msg = noise.decrypt(recv_frame(sock))
        if msg == b"bye":
            break
        send_frame(sock, noise.encrypt(hashlib.sha512(msg).digest()))
        answered += 1
    print(f"hash {noise.get_handshake_hash().hex()}")
    print(f"count {answered}")
    sock.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - report any failure to the Rust side
        print(f"noise_peer.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
