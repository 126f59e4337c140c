//! Addresses below every layer that binds or dials: the `pk@host:port` form ([`PkAddr`]), the
//! `host:port` check every listen option and config field goes through, and the `:port`
//! shorthand for "every interface".

use core::fmt;

use crate::crypto::PublicKey;

/// A public key at a TCP address, `pk@host:port`: a relay to use directly (config
/// `dmsg.servers`, `--relay`, `--join`) or a TCP-mode peer (`tcp://pk@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkAddr {
    /// The relay's public key.
    pub pk: PublicKey,
    /// Its TCP address, `host:port`.
    pub addr: String,
}

impl PkAddr {
    /// Parses `pk@host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (pk, addr) = s
            .split_once('@')
            .ok_or_else(|| format!("expected <pk>@<host>:<port>, got {s:?}"))?;
        let pk = PublicKey::from_hex(pk).map_err(|e| format!("relay key: {e}"))?;
        check_host_port(addr)?;
        Ok(PkAddr {
            pk,
            addr: addr.to_string(),
        })
    }
}

impl fmt::Display for PkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.pk, self.addr)
    }
}

/// Checks `host:port` (host may be empty, meaning every interface, or a bracketed IPv6).
pub fn check_host_port(s: &str) -> Result<(), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected <host>:<port>, got {s:?}"))?;
    port.parse::<u16>()
        .map_err(|_| format!("port {port:?} is not a number from 0 to 65535"))?;
    let bad_host = host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '@')
        || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']')));
    if bad_host {
        return Err(format!("{host:?} is not a host name or address"));
    }
    Ok(())
}

/// True when `host:port` names a loopback host.
pub fn is_loopback(s: &str) -> bool {
    let host = s.rsplit_once(':').map(|(h, _)| h).unwrap_or(s);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The address to bind for a listen address: `:port` and `*:port` mean every interface.
pub fn bind_addr(listen: &str) -> String {
    match listen
        .strip_prefix(':')
        .or_else(|| listen.strip_prefix("*:"))
    {
        Some(port) => format!("0.0.0.0:{port}"),
        None => listen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_checks() {
        assert_eq!(bind_addr("*:8001"), "0.0.0.0:8001");
        assert_eq!(bind_addr(":8001"), "0.0.0.0:8001");
        assert_eq!(bind_addr("127.0.0.1:8001"), "127.0.0.1:8001");
        assert!(check_host_port(":7777").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert!(check_host_port("::1:80").is_err());
        assert!(check_host_port("host:99999").is_err());
        assert!(is_loopback("127.0.0.1:3435"));
        assert!(is_loopback("[::1]:1"));
        assert!(is_loopback("localhost:1"));
        assert!(!is_loopback(":3435"));
        assert!(!is_loopback("0.0.0.0:3435"));
    }

    #[test]
    fn pk_addr_round_trips() {
        let pk = crate::crypto::Keypair::from_seed(&[3u8; 32]);
        let text = format!("{}@relay.example:8080", pk.public());
        let a = PkAddr::parse(&text).unwrap();
        assert_eq!(
            (a.pk, a.addr.as_str()),
            (*pk.public(), "relay.example:8080")
        );
        assert_eq!(a.to_string(), text);
        assert!(PkAddr::parse("relay.example:8080").is_err());
        assert!(PkAddr::parse(&format!("{}@nope", pk.public())).is_err());
        assert_eq!(bind_addr(":80"), "0.0.0.0:80");
        assert_eq!(bind_addr("127.0.0.1:80"), "127.0.0.1:80");
    }
}
