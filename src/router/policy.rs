//! The per-app route policy (`launcher.apps[].route`, `--route`): how a dial reaches a peer.
//!
//! | text | meaning |
//! |---|---|
//! | `auto` | a live route group if there is one, else dmsg now and a route in the background (the default) |
//! | `dmsg` | dmsg only, never a route |
//! | `direct` | a route of exactly one transport hop |
//! | `hops:K` | a route of at least K hops (K 1..=8) |
//! | `via:<pk>[,<pk>…]` | a route through these visors, in this order (1 to 7 of them) |
//! | `mux:N` | N node-disjoint legs (N 1..=4); when one fails its streams move to a survivor |
//!
//! [`RoutePolicy::path_spec`] turns a policy into the [`PathSpec`] of its legs and
//! [`RoutePolicy::legs`] says how many legs it keeps. `Display` writes the text `FromStr`
//! reads.

use core::fmt;
use core::str::FromStr;

use crate::crypto::PublicKey;
use crate::router::path::{DEFAULT_MAX_HOPS, PathSpec};

/// Most legs of `mux:N`.
pub const MAX_MUX_LEGS: u8 = 4;

/// How a dial reaches a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RoutePolicy {
    /// A live route, else dmsg now and a route in the background.
    #[default]
    Auto,
    /// dmsg only.
    Dmsg,
    /// Exactly one transport hop.
    Direct,
    /// At least K hops.
    Hops(u8),
    /// Through these keys, in order.
    Via(Vec<PublicKey>),
    /// N node-disjoint legs.
    Mux(u8),
}

/// What a policy string got wrong, and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; a route policy is auto, dmsg, direct, hops:K (K 1..={DEFAULT_MAX_HOPS}), \
             via:<pk>[,<pk>...] (1 to 7 keys) or mux:N (N 1..={MAX_MUX_LEGS})",
            self.0
        )
    }
}

impl std::error::Error for PolicyError {}

impl RoutePolicy {
    /// The path constraints of one leg; `None` for `dmsg` (no route at all).
    pub fn path_spec(&self) -> Option<PathSpec> {
        let mut spec = PathSpec::default();
        match self {
            RoutePolicy::Dmsg => return None,
            RoutePolicy::Auto | RoutePolicy::Mux(_) => {}
            RoutePolicy::Direct => spec.max_hops = 1,
            RoutePolicy::Hops(k) => spec.min_hops = usize::from(*k),
            RoutePolicy::Via(v) => {
                spec.via = v.clone();
                spec.min_hops = v.len() + 1;
            }
        }
        Some(spec)
    }

    /// Legs a route group of this policy keeps (0 for `dmsg`).
    pub fn legs(&self) -> usize {
        match self {
            RoutePolicy::Dmsg => 0,
            RoutePolicy::Mux(n) => usize::from(*n),
            _ => 1,
        }
    }

    /// Whether the dial may fall back to dmsg while the route is set up (`auto` only).
    pub fn falls_back_to_dmsg(&self) -> bool {
        matches!(self, RoutePolicy::Auto)
    }
}

impl fmt::Display for RoutePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePolicy::Auto => f.write_str("auto"),
            RoutePolicy::Dmsg => f.write_str("dmsg"),
            RoutePolicy::Direct => f.write_str("direct"),
            RoutePolicy::Hops(k) => write!(f, "hops:{k}"),
            RoutePolicy::Mux(n) => write!(f, "mux:{n}"),
            RoutePolicy::Via(v) => {
                f.write_str("via:")?;
                for (i, pk) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{pk}")?;
                }
                Ok(())
            }
        }
    }
}

fn number(what: &str, s: &str, max: u8) -> Result<u8, PolicyError> {
    match s.parse::<u8>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(PolicyError(format!(
            "{what} needs a number 1..={max}, not {s:?}"
        ))),
    }
}

impl FromStr for RoutePolicy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s {
            "auto" => return Ok(RoutePolicy::Auto),
            "dmsg" => return Ok(RoutePolicy::Dmsg),
            "direct" => return Ok(RoutePolicy::Direct),
            _ => {}
        }
        let Some((kind, arg)) = s.split_once(':') else {
            return Err(PolicyError(format!("unknown route policy {s:?}")));
        };
        match kind {
            "hops" => Ok(RoutePolicy::Hops(number(
                "hops:K",
                arg,
                DEFAULT_MAX_HOPS as u8,
            )?)),
            "mux" => Ok(RoutePolicy::Mux(number("mux:N", arg, MAX_MUX_LEGS)?)),
            "via" => {
                let mut keys = Vec::new();
                for part in arg.split(',') {
                    let pk = PublicKey::from_hex(part.trim()).map_err(|e| {
                        PolicyError(format!("via: {part:?} is not a public key ({e})"))
                    })?;
                    if keys.contains(&pk) {
                        return Err(PolicyError(format!("via: {part} named twice")));
                    }
                    keys.push(pk);
                }
                if keys.len() >= DEFAULT_MAX_HOPS {
                    return Err(PolicyError(format!(
                        "via: {} keys do not fit in {DEFAULT_MAX_HOPS} hops",
                        keys.len()
                    )));
                }
                Ok(RoutePolicy::Via(keys))
            }
            _ => Err(PolicyError(format!("unknown route policy {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn pk(n: u8) -> PublicKey {
        *Keypair::from_seed(&[n; 32]).public()
    }

    #[test]
    fn round_trips() {
        let via = format!("via:{},{}", pk(1), pk(2));
        for s in [
            "auto", "dmsg", "direct", "hops:1", "hops:8", "mux:1", "mux:4", &via,
        ] {
            let p: RoutePolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(RoutePolicy::default(), RoutePolicy::Auto);
        assert_eq!(" direct ".parse::<RoutePolicy>(), Ok(RoutePolicy::Direct));
    }

    #[test]
    fn errors_say_what_is_accepted() {
        for bad in [
            "", "fast", "hops:0", "hops:9", "hops:x", "mux:5", "mux:0", "via:", "via:zz",
        ] {
            let e = bad.parse::<RoutePolicy>().unwrap_err().to_string();
            assert!(
                e.contains("a route policy is auto, dmsg, direct, hops:K"),
                "{bad}: {e}"
            );
        }
        let e = "hops:9".parse::<RoutePolicy>().unwrap_err().to_string();
        assert!(
            e.starts_with("hops:K needs a number 1..=8, not \"9\""),
            "{e}"
        );
        let twice = format!("via:{},{}", pk(1), pk(1));
        assert!(
            twice
                .parse::<RoutePolicy>()
                .unwrap_err()
                .to_string()
                .contains("named twice")
        );
        let eight: Vec<String> = (1..=8).map(|n| pk(n).to_hex()).collect();
        let e = format!("via:{}", eight.join(","))
            .parse::<RoutePolicy>()
            .unwrap_err();
        assert!(e.to_string().contains("do not fit"));
    }

    #[test]
    fn specs_and_legs() {
        assert_eq!(RoutePolicy::Dmsg.path_spec(), None);
        assert_eq!(RoutePolicy::Dmsg.legs(), 0);
        assert_eq!(RoutePolicy::Auto.path_spec(), Some(PathSpec::default()));
        let d = RoutePolicy::Direct.path_spec().unwrap();
        assert_eq!((d.min_hops, d.max_hops), (1, 1));
        let h = RoutePolicy::Hops(3).path_spec().unwrap();
        assert_eq!((h.min_hops, h.max_hops), (3, 8));
        let v = RoutePolicy::Via(vec![pk(1), pk(2)]).path_spec().unwrap();
        assert_eq!((v.min_hops, v.via.clone()), (3, vec![pk(1), pk(2)]));
        assert_eq!(RoutePolicy::Mux(3).legs(), 3);
        assert_eq!(RoutePolicy::Hops(2).legs(), 1);
        assert!(RoutePolicy::Auto.falls_back_to_dmsg());
        assert!(!RoutePolicy::Direct.falls_back_to_dmsg());
    }
}
