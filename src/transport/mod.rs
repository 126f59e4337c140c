//! Skynet transports (DESIGN.md §3.7): authenticated, encrypted visor-to-visor links that carry
//! routing packets — `stcp` (direct TCP with Noise KK) and `dmsg` (a dmsg stream to the peer's
//! port 45) — and the manager that keeps them up.
