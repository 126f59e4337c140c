//! The skynet answers of the RPC (transports, the rule table, route groups, drop counters):
//! the JSON form of the views of [`crate::router::control`], which are the body types
//! themselves (one struct for the router's facade, the server and the CLI).
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/transports` | items of [`TpView`] |
//! | `GET /v1/transports/types` | [`TpTypes`] |
//! | `POST /v1/transports/<pk>[?type=stcp\|dmsg][&persistent=0]` | [`TpView`] |
//! | `DELETE /v1/transports/<id>` | [`Removed`] |
//! | `GET /v1/routes` | items of [`RuleInfo`] |
//! | `GET /v1/routes/drops` | [`Drops`] |
//! | `GET /v1/groups` | items of [`GroupView`] (every route group) |
//! | `GET /v1/apps/<name>/routes` | items of [`GroupView`] (that app's) |

use miniserde::json::Value;

use super::{Body, flag, num, objects, text, texts};
use crate::http::json::{Fields, JsonError, Ordered, Out, kind, str_array};
pub use crate::router::control::{GroupView, LegView, RuleHop, RuleInfo, TpView};

impl Body for TpView {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("id", Out::Str(self.id.clone()))
            .field("peer", Out::Str(self.peer.clone()))
            .field("type", Out::Str(self.kind.clone()))
            .field("state", Out::Str(self.state.clone()))
            .field("initiator", Out::Bool(self.initiator))
            .field("persistent", Out::Bool(self.persistent))
            .field("rtt_us", Out::U64(self.rtt_us))
            .field("rx_bytes", Out::U64(self.rx_bytes))
            .field("tx_bytes", Out::U64(self.tx_bytes))
            .field("age_secs", Out::U64(self.age_secs))
            .field("buffer_bytes", Out::U64(self.buffer_bytes))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(TpView {
            id: text(f, "id")?,
            peer: text(f, "peer")?,
            kind: text(f, "type")?,
            state: text(f, "state")?,
            initiator: flag(f, "initiator")?,
            persistent: flag(f, "persistent")?,
            rtt_us: num(f, "rtt_us")?,
            rx_bytes: num(f, "rx_bytes")?,
            tx_bytes: num(f, "tx_bytes")?,
            age_secs: num(f, "age_secs")?,
            buffer_bytes: f.opt_u64("buffer_bytes", u64::MAX)?.unwrap_or(0),
        })
    }
}

/// `GET /v1/transports/types`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpTypes {
    /// `stcp`, `dmsg`.
    pub types: Vec<String>,
}

impl Body for TpTypes {
    fn to_json(&self) -> Ordered {
        Ordered::new().field("types", str_array(self.types.iter().cloned()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(TpTypes {
            types: texts(f, "types")?,
        })
    }
}

/// `DELETE /v1/transports/<id>`: the id removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The transport id.
    pub removed: String,
}

impl Body for Removed {
    fn to_json(&self) -> Ordered {
        Ordered::new().field("removed", Out::Str(self.removed.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(Removed {
            removed: text(f, "removed")?,
        })
    }
}

fn u32_of(f: &mut Fields<'_>, k: &'static str) -> Result<u32, JsonError> {
    Ok(f.opt_u64(k, u32::MAX.into())?
        .ok_or_else(|| f.err(k, "missing (required)"))? as u32)
}

impl Body for RuleHop {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("tp", Out::Str(self.tp.clone()))
            .field("peer", Out::Str(self.peer.clone()))
            .field("route_id", Out::U64(self.route_id.into()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(RuleHop {
            tp: text(f, "tp")?,
            peer: text(f, "peer")?,
            route_id: u32_of(f, "route_id")?,
        })
    }
}

/// Adds `key` with the hop, or nothing for none.
fn hop_out(o: Ordered, key: &str, h: &Option<RuleHop>) -> Ordered {
    match h {
        Some(h) => o.field(key, Out::Obj(h.to_json())),
        None => o,
    }
}

fn hop_in(f: &mut Fields<'_>, k: &'static str) -> Result<Option<RuleHop>, JsonError> {
    f.opt_object(k)?
        .map(|mut o| RuleHop::read(&mut o))
        .transpose()
}

impl Body for RuleInfo {
    fn to_json(&self) -> Ordered {
        let o = Ordered::new()
            .field("id", Out::U64(self.id.into()))
            .field("kind", Out::Str(self.kind.clone()))
            .field("state", Out::Str(self.state.clone()));
        let o = hop_out(o, "towards_src", &self.towards_src);
        hop_out(o, "towards_dst", &self.towards_dst)
            .field("group_id", Out::U64(self.group_id))
            .field("leg", Out::U64(self.leg.into()))
            .field("age_secs", Out::U64(self.age_secs))
            .field("idle_secs", Out::U64(self.idle_secs))
            .field("packets", Out::U64(self.packets))
            .field("bytes", Out::U64(self.bytes))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(RuleInfo {
            id: u32_of(f, "id")?,
            kind: text(f, "kind")?,
            state: text(f, "state")?,
            towards_src: hop_in(f, "towards_src")?,
            towards_dst: hop_in(f, "towards_dst")?,
            group_id: num(f, "group_id")?,
            leg: f.opt_u64("leg", u8::MAX.into())?.unwrap_or(0) as u8,
            age_secs: num(f, "age_secs")?,
            idle_secs: num(f, "idle_secs")?,
            packets: num(f, "packets")?,
            bytes: num(f, "bytes")?,
        })
    }
}

impl Body for LegView {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("id", Out::U64(self.id.into()))
            .field("hops", str_array(self.hops.iter().cloned()))
            .field("tp_types", str_array(self.tp_types.iter().cloned()))
            .field("rtt_us", Out::U64(self.rtt_us))
            .field("state", Out::Str(self.state.clone()))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(LegView {
            id: u32_of(f, "id")?,
            hops: texts(f, "hops")?,
            tp_types: texts(f, "tp_types")?,
            rtt_us: num(f, "rtt_us")?,
            state: text(f, "state")?,
        })
    }
}

impl Body for GroupView {
    fn to_json(&self) -> Ordered {
        Ordered::new()
            .field("peer", Out::Str(self.peer.clone()))
            .field("policy", Out::Str(self.policy.clone()))
            .field("initiator", Out::Bool(self.initiator))
            .field("apps", str_array(self.apps.iter().cloned()))
            .field("state", Out::Str(self.state.clone()))
            .field(
                "legs",
                Out::Arr(self.legs.iter().map(|l| Out::Obj(l.to_json())).collect()),
            )
            .field("rx_bytes", Out::U64(self.rx_bytes))
            .field("tx_bytes", Out::U64(self.tx_bytes))
            .field("age_secs", Out::U64(self.age_secs))
            .field("streams", Out::U64(self.streams))
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        Ok(GroupView {
            peer: text(f, "peer")?,
            policy: text(f, "policy")?,
            initiator: flag(f, "initiator")?,
            apps: texts(f, "apps")?,
            state: text(f, "state")?,
            legs: objects(f, "legs")?,
            rx_bytes: num(f, "rx_bytes")?,
            tx_bytes: num(f, "tx_bytes")?,
            age_secs: num(f, "age_secs")?,
            streams: num(f, "streams")?,
        })
    }
}

/// `GET /v1/routes/drops`: packets the router dropped, by reason (sorted by reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drops(pub Vec<(String, u64)>);

impl Body for Drops {
    fn to_json(&self) -> Ordered {
        Ordered::new().field(
            "drops",
            Out::Arr(
                self.0
                    .iter()
                    .map(|(r, n)| {
                        Out::Obj(
                            Ordered::new()
                                .field("reason", Out::Str(r.clone()))
                                .field("count", Out::U64(*n)),
                        )
                    })
                    .collect(),
            ),
        )
    }

    fn read(f: &mut Fields<'_>) -> Result<Self, JsonError> {
        f.opt_array("drops")?
            .into_iter()
            .map(|(path, v)| match v {
                Value::Object(o) => {
                    let mut d = Fields::new(o, path);
                    Ok((text(&mut d, "reason")?, num(&mut d, "count")?))
                }
                other => Err(JsonError {
                    path,
                    msg: format!("expected an object, got {}", kind(other)),
                }),
            })
            .collect::<Result<_, _>>()
            .map(Drops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::parse_object;
    use crate::rpc::{Items, Request};

    fn round_trip<T: Body + PartialEq + std::fmt::Debug>(v: T) -> String {
        let text = v.to_json().to_pretty();
        let back = T::from_object(&parse_object(&text).unwrap()).unwrap();
        assert_eq!(back, v, "{text}");
        v.to_json().to_compact()
    }

    fn tp() -> TpView {
        TpView {
            id: "0123456789abcdef0123456789abcdef".into(),
            peer: "ab".repeat(32),
            kind: "stcp".into(),
            state: "up".into(),
            initiator: true,
            persistent: true,
            rtt_us: 250,
            rx_bytes: 1,
            tx_bytes: 2,
            age_secs: 3,
            buffer_bytes: 4096,
        }
    }

    fn hop(id: u32) -> RuleHop {
        RuleHop {
            tp: "0123456789abcdef0123456789abcdef".into(),
            peer: "cd".repeat(32),
            route_id: id,
        }
    }

    fn rule() -> RuleInfo {
        RuleInfo {
            id: 7,
            kind: "intermediary".into(),
            state: "ready".into(),
            towards_src: Some(hop(3)),
            towards_dst: Some(hop(u32::MAX)),
            group_id: u64::MAX,
            leg: 1,
            age_secs: 4,
            idle_secs: 0,
            packets: 10,
            bytes: 1000,
        }
    }

    fn group() -> GroupView {
        GroupView {
            peer: "ef".repeat(32),
            policy: "mux:2".into(),
            initiator: true,
            apps: vec!["pty".into()],
            state: "open".into(),
            legs: vec![
                LegView {
                    id: 9,
                    hops: vec!["a".into(), "b".into(), "c".into()],
                    tp_types: vec!["stcp".into(), "dmsg".into()],
                    rtt_us: 800,
                    state: "up".into(),
                },
                LegView::default(),
            ],
            rx_bytes: 5,
            tx_bytes: 6,
            age_secs: 7,
            streams: 2,
        }
    }

    #[test]
    fn bodies_round_trip() {
        round_trip(tp());
        round_trip(Items(vec![tp(), TpView::default()]));
        round_trip(TpTypes {
            types: vec!["stcp".into(), "dmsg".into()],
        });
        round_trip(Removed {
            removed: "00".repeat(16),
        });
        round_trip(rule());
        round_trip(RuleInfo {
            towards_src: None,
            towards_dst: None,
            kind: "source".into(),
            state: "pending".into(),
            ..rule()
        });
        round_trip(Items(vec![rule()]));
        round_trip(group());
        round_trip(Items(vec![group(), GroupView::default()]));
        round_trip(Drops(vec![
            ("unknown route id".into(), 3),
            ("wrong transport".into(), 0),
        ]));
        round_trip(Drops(Vec::new()));
    }

    /// The wire form docs/cli.md shows: names, order, `type` for the transport type, no
    /// field for a rule's missing direction.
    #[test]
    fn wire_form_is_stable() {
        assert_eq!(
            tp().to_json().to_compact(),
            format!(
                r#"{{"id":"0123456789abcdef0123456789abcdef","peer":"{}","type":"stcp","state":"up","initiator":true,"persistent":true,"rtt_us":250,"rx_bytes":1,"tx_bytes":2,"age_secs":3,"buffer_bytes":4096}}"#,
                "ab".repeat(32)
            )
        );
        let src = RuleInfo {
            towards_src: None,
            ..rule()
        };
        let j = src.to_json().to_compact();
        assert!(
            j.starts_with(r#"{"id":7,"kind":"intermediary","state":"ready","towards_dst":{"tp":"#),
            "{j}"
        );
        assert_eq!(
            Drops(vec![("x".into(), 1)]).to_json().to_compact(),
            r#"{"drops":[{"reason":"x","count":1}]}"#
        );
    }

    #[test]
    fn bad_fields_are_named_by_path() {
        let bad = |text: &str| parse_object(text).unwrap();
        let o = bad(
            r#"{"items":[{"peer":"p","policy":"auto","state":"open","rx_bytes":1,"tx_bytes":1,"age_secs":1,"streams":0,"legs":[{"id":1,"hops":["a",2],"rtt_us":0,"state":"up"}]}]}"#,
        );
        assert_eq!(
            Items::<GroupView>::from_object(&o).unwrap_err().to_string(),
            "field `items[0].legs[0].hops[1]`: expected a string, got a number"
        );
        let mut r = rule().to_json().to_compact();
        r = r.replace(r#""route_id":3"#, r#""route_id":4294967296"#);
        let e = RuleInfo::from_object(&bad(&r)).unwrap_err().to_string();
        assert!(
            e.starts_with("field `towards_src.route_id`: expected an integer from 0 to 4294967295"),
            "{e}"
        );
        let o = bad(r#"{"id":1,"kind":"source","state":"ready","towards_src":"x"}"#);
        assert_eq!(
            RuleInfo::from_object(&o).unwrap_err().to_string(),
            "field `towards_src`: expected an object, got a string"
        );
        let o = bad(r#"{"id":"x","peer":"p"}"#);
        assert_eq!(
            TpView::from_object(&o).unwrap_err().to_string(),
            "field `type`: missing (required)"
        );
        let o =
            bad(r#"{"items":[{"id":"x","peer":"p","type":"stcp","state":"up","initiator":1}]}"#);
        assert_eq!(
            Items::<TpView>::from_object(&o).unwrap_err().to_string(),
            "field `items[0].initiator`: expected true or false, got a number"
        );
        let o = bad(r#"{"drops":[{"reason":"r"}]}"#);
        assert_eq!(
            Drops::from_object(&o).unwrap_err().to_string(),
            "field `drops[0].count`: missing (required)"
        );
        let o = bad(r#"{"drops":[1]}"#);
        assert_eq!(
            Drops::from_object(&o).unwrap_err().to_string(),
            "field `drops[0]`: expected an object, got a number"
        );
    }

    #[test]
    fn requests_name_their_routes() {
        let pk = "ab".repeat(32);
        let cases = [
            (Request::Transports, "GET", "/v1/transports".to_string()),
            (Request::TpTypes, "GET", "/v1/transports/types".into()),
            (
                Request::TpAdd {
                    pk: pk.clone(),
                    kind: Some("dmsg".into()),
                    persistent: false,
                },
                "POST",
                format!("/v1/transports/{pk}?type=dmsg&persistent=0"),
            ),
            (
                Request::TpAdd {
                    pk: pk.clone(),
                    kind: None,
                    persistent: true,
                },
                "POST",
                format!("/v1/transports/{pk}"),
            ),
            (
                Request::TpRm("ff".into()),
                "DELETE",
                "/v1/transports/ff".into(),
            ),
            (Request::Routes, "GET", "/v1/routes".into()),
            (Request::Drops, "GET", "/v1/routes/drops".into()),
            (Request::Groups(None), "GET", "/v1/groups".into()),
            (
                Request::Groups(Some("pty".into())),
                "GET",
                "/v1/apps/pty/routes".into(),
            ),
            (
                Request::Ping {
                    pk: pk.clone(),
                    count: 2,
                    route: Some("hops:2".into()),
                },
                "POST",
                format!("/v1/ping/{pk}?count=2&route=hops:2"),
            ),
        ];
        for (req, m, p) in cases {
            assert_eq!((req.method(), req.path()), (m, p), "{req:?}");
        }
    }
}
