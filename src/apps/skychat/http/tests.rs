//! Hostile-input tests of the request parsing and the credential gate.

use super::*;

fn pk_hex() -> String {
    crate::crypto::identity::Keypair::from_seed(&[7; 32])
        .public()
        .to_hex()
}

fn err_text(r: Response) -> (u16, String) {
    (r.status, String::from_utf8(r.body).unwrap())
}

fn msg_err(body: &str) -> (u16, String) {
    err_text(parse_message(body.as_bytes()).unwrap_err())
}

#[test]
fn message_parses_with_defaults_and_all_fields() {
    let pk = pk_hex();
    let m = parse_message(format!(r#"{{"recipient":"{pk}","message":"hi \"x\"\n"}}"#).as_bytes())
        .unwrap();
    assert_eq!(m.recipient, PeerRef::Pk(PublicKey::from_hex(&pk).unwrap()));
    assert_eq!(m.message, "hi \"x\"\n");
    assert_eq!(
        (m.network, m.wait_ms, m.reply_to, m.retries),
        ("auto", 5000, None, 0)
    );
    let m = parse_message(
        br#"{"recipient":"bob","message":"y","network":"tcp","wait_ms":0,"reply_to":"00000000000000ff","retries":5}"#,
    )
    .unwrap();
    assert_eq!(m.recipient, PeerRef::Alias("bob".into()));
    assert_eq!(
        (m.network, m.wait_ms, m.reply_to, m.retries),
        ("tcp", 0, Some(255), 5)
    );
}

#[test]
fn message_refuses_hostile_bodies_naming_the_field() {
    let cases: &[(&str, &str)] = &[
        ("", "JSON object body is required"),
        ("garbage", "not valid JSON"),
        ("{\"recipient\":", "not valid JSON"),
        ("[1,2]", "expected a JSON object"),
        ("\"str\"", "expected a JSON object"),
        (r#"{"message":"x"}"#, "`recipient`: missing"),
        (r#"{"recipient":"bob"}"#, "`message`: missing"),
        (
            r#"{"recipient":5,"message":"x"}"#,
            "`recipient`: expected a string",
        ),
        (
            r#"{"recipient":"bob","message":["x"]}"#,
            "`message`: expected a string",
        ),
        (
            r#"{"recipient":"bob","message":""}"#,
            "`message`: must not be empty",
        ),
        (
            r#"{"recipient":"no spaces","message":"x"}"#,
            "`recipient`: expected a public key",
        ),
        (
            r#"{"recipient":"bob","message":"x","network":"carrier-pigeon"}"#,
            "`network`: expected one of auto|dmsg|skynet|tcp",
        ),
        (
            r#"{"recipient":"bob","message":"x","network":1}"#,
            "`network`: expected a string",
        ),
        (
            r#"{"recipient":"bob","message":"x","wait_ms":60001}"#,
            "`wait_ms`: expected an integer from 0 to 60000",
        ),
        (
            r#"{"recipient":"bob","message":"x","wait_ms":-1}"#,
            "`wait_ms`",
        ),
        (
            r#"{"recipient":"bob","message":"x","wait_ms":1.5}"#,
            "`wait_ms`",
        ),
        (
            r#"{"recipient":"bob","message":"x","wait_ms":"5"}"#,
            "`wait_ms`: expected a number",
        ),
        (
            r#"{"recipient":"bob","message":"x","retries":6}"#,
            "`retries`",
        ),
        (
            r#"{"recipient":"bob","message":"x","reply_to":"XYZ"}"#,
            "`reply_to`: expected a message id",
        ),
        (
            r#"{"recipient":"bob","message":"x","reply_to":"00000000000000FF"}"#,
            "`reply_to`",
        ),
        (
            r#"{"recipient":"bob","message":"x","to":"y"}"#,
            "`to`: unknown field",
        ),
    ];
    for (body, want) in cases {
        let (status, text) = msg_err(body);
        assert_eq!(status, 400, "{body}");
        assert!(text.contains(want), "{body}: {text}");
        assert!(text.starts_with("{\"error\":"), "{text}");
    }
    // A key that is 64 hex but not a valid point.
    let (s, t) = msg_err(&format!(
        r#"{{"recipient":"{}","message":"x"}}"#,
        "f".repeat(64)
    ));
    assert_eq!(s, 400, "{t}");
    assert!(t.contains("`recipient`"), "{t}");
    // Not UTF-8.
    let r = parse_message(b"{\"recipient\":\"\xff\"}").unwrap_err();
    assert_eq!(
        err_text(r),
        (400, "{\"error\":\"the body is not UTF-8\"}\n".into())
    );
    // Oversize.
    let big = format!(
        r#"{{"recipient":"bob","message":"{}"}}"#,
        "x".repeat(MAX_BODY)
    );
    assert_eq!(parse_message(big.as_bytes()).unwrap_err().status, 413);
    // Deep nesting must not blow the stack.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(parse_message(deep.as_bytes()).unwrap_err().status, 400);
}

#[test]
fn read_alias_forget_bodies() {
    let pk = pk_hex();
    let (p, id) =
        parse_read(format!(r#"{{"peer":"{pk}","id":"0123456789abcdef"}}"#).as_bytes()).unwrap();
    assert!(matches!(p, PeerRef::Pk(_)));
    assert_eq!(id, 0x0123456789abcdef);
    assert!(
        err_text(parse_read(br#"{"peer":"bob"}"#).unwrap_err())
            .1
            .contains("`id`: missing")
    );
    assert!(
        err_text(parse_read(br#"{"peer":"bob","id":"1"}"#).unwrap_err())
            .1
            .contains("`id`")
    );
    let (n, k) = parse_alias_add(format!(r#"{{"name":"bob","pk":"{pk}"}}"#).as_bytes()).unwrap();
    assert_eq!((n.as_str(), k.to_hex()), ("bob", pk.clone()));
    assert!(
        err_text(parse_alias_add(br#"{"name":"bob","pk":"zz"}"#).unwrap_err())
            .1
            .contains("`pk`")
    );
    let hexname = format!(r#"{{"name":"{pk}","pk":"{pk}"}}"#);
    assert!(
        err_text(parse_alias_add(hexname.as_bytes()).unwrap_err())
            .1
            .contains("`name`")
    );
    assert!(
        err_text(parse_alias_add(br#"{"name":"a b","pk":"x"}"#).unwrap_err())
            .1
            .contains("`name`")
    );
    assert!(
        err_text(
            parse_alias_add(format!(r#"{{"name":"b","pk":"{pk}","x":1}}"#).as_bytes()).unwrap_err()
        )
        .1
        .contains("`x`: unknown")
    );
    assert_eq!(parse_alias_rm(br#"{"name":"bob"}"#).unwrap(), "bob");
    assert!(
        err_text(parse_alias_rm(br#"{}"#).unwrap_err())
            .1
            .contains("`name`: missing")
    );
    assert_eq!(parse_forget(b"").unwrap(), None);
    assert_eq!(parse_forget(b"{}").unwrap(), None);
    assert_eq!(
        parse_forget(br#"{"peer":"bob"}"#).unwrap(),
        Some(PeerRef::Alias("bob".into()))
    );
    assert!(
        err_text(parse_forget(br#"{"peer":true}"#).unwrap_err())
            .1
            .contains("`peer`")
    );
    assert!(
        err_text(parse_forget(br#"{"all":true}"#).unwrap_err())
            .1
            .contains("unknown")
    );
}

fn req(method: &str, target: &str, headers: &[(&str, &str)]) -> Request {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    Request {
        method: method.into(),
        path,
        query,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        peer: None,
        peer_pk: None,
    }
}

#[test]
fn queries_parse_and_refuse_garbage() {
    let (p, l) = parse_history_query(&req("GET", "/history", &[])).unwrap();
    assert_eq!((p, l), (None, 100));
    let (p, l) = parse_history_query(&req("GET", "/history?peer=bob&limit=1000", &[])).unwrap();
    assert_eq!((p, l), (Some(PeerRef::Alias("bob".into())), 1000));
    for q in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=-1",
        "peer=%zz",
        "peer=a%20b",
    ] {
        let r = parse_history_query(&req("GET", &format!("/history?{q}"), &[])).unwrap_err();
        assert_eq!(r.status, 400, "{q}");
    }
    let (c, s) = parse_events_query(&req("GET", "/events", &[])).unwrap();
    assert_eq!((c, s), (vec!["dm", "system", "group", "pair"], None));
    let (c, s) = parse_events_query(&req("GET", "/events?channel=dm&since=42", &[])).unwrap();
    assert_eq!((c, s), (vec!["dm"], Some(42)));
    let (c, s) = parse_events_query(&req(
        "GET",
        "/events?channel=dm,dm&since=1",
        &[("last-event-id", "7")],
    ))
    .unwrap();
    assert_eq!((c, s), (vec!["dm"], Some(7)));
    let (c, _) = parse_events_query(&req("GET", "/events?channel=group", &[])).unwrap();
    assert_eq!(c, vec!["group"]);
    assert_eq!(
        parse_events_query(&req("GET", "/events?channel=groups", &[]))
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        parse_events_query(&req("GET", "/events?since=abc", &[]))
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        resume_point(&req("GET", "/sse", &[("last-event-id", "x")]))
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(
        resume_point(&req("GET", "/sse", &[("last-event-id", " ")])).unwrap(),
        None
    );
    assert_eq!(pct_decode("a%2Cb+c").as_deref(), Some("a,b c"));
    assert_eq!(pct_decode("%"), None);
    assert_eq!(pct_decode("%ff"), None);
}

fn gated(password: Option<&str>) -> (Handler, Arc<ErrorCount>, String) {
    let token = "ab".repeat(32);
    let opts = HttpOpts {
        token: token.clone(),
        token_file: "/tmp/t.token".into(),
        password: password.map(|p| auth::PasswordHash::parse(&auth::hash_password(p)).unwrap()),
    };
    let errors = Arc::new(ErrorCount::default());
    let inner: Handler = crate::http::server::sync_handler(|_| Response::text(200, "inner"));
    let served: SocketAddr = "127.0.0.1:8001".parse().unwrap();
    (gate(served, &opts, errors.clone(), inner), errors, token)
}

fn run(h: &Handler, r: Request) -> Response {
    futures_lite::future::block_on(h(r))
}

#[test]
fn gate_checks_host_origin_then_credentials() {
    let (h, errors, token) = gated(None);
    let host = ("host", "127.0.0.1:8001");
    let bearer = format!("Bearer {token}");
    let cookie = format!("skychat={token}");
    assert_eq!(run(&h, req("GET", "/health", &[host])).status, 200);
    assert_eq!(
        run(
            &h,
            req("GET", "/status", &[host, ("authorization", &bearer)])
        )
        .status,
        200
    );
    assert_eq!(
        run(&h, req("GET", "/status", &[host, ("cookie", &cookie)])).status,
        200
    );
    // The page's own origin passes; another does not, even with the token.
    let same = [
        host,
        ("origin", "http://127.0.0.1:8001"),
        ("cookie", &cookie),
    ];
    assert_eq!(run(&h, req("POST", "/message", &same)).status, 200);
    let evil = [host, ("origin", "http://evil.example"), ("cookie", &cookie)];
    assert_eq!(run(&h, req("POST", "/message", &evil)).status, 403);
    let rebound = [("host", "evil.example:8001"), ("authorization", &bearer)];
    assert_eq!(run(&h, req("GET", "/status", &rebound)).status, 403);
    assert_eq!(run(&h, req("GET", "/health", &[])).status, 403);
    let r = run(&h, req("GET", "/status", &[host]));
    assert_eq!(r.status, 401);
    assert!(String::from_utf8_lossy(&r.body).contains("/tmp/t.token"));
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "WWW-Authenticate" && v == "Bearer")
    );
    let r = run(&h, req("GET", "/", &[host]));
    assert_eq!(r.status, 401);
    assert!(r.content_type.starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("skywire cli skychat web"));
    let n = errors.get();
    assert!(n >= 5, "{n}");
    // Login: the right token sets the cookie and redirects.
    let r = run(&h, req("GET", &format!("/login?token={token}"), &[host]));
    assert_eq!(r.status, 303);
    let get = |k: &str| {
        r.headers
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("Location").as_deref(), Some("/"));
    assert_eq!(
        get("Set-Cookie").unwrap(),
        format!("skychat={token}; HttpOnly; SameSite=Strict; Path=/")
    );
    assert_eq!(
        run(&h, req("GET", "/login?token=nope", &[host])).status,
        401
    );
    assert_eq!(run(&h, req("GET", "/login", &[host])).status, 401);
    assert_eq!(
        run(&h, req("POST", &format!("/login?token={token}"), &[host])).status,
        405
    );
}

#[test]
fn gate_with_password_prompts_for_basic() {
    let (h, _, _) = gated(Some("s3cret"));
    let host = ("host", "localhost:8001");
    let r = run(&h, req("GET", "/status", &[host]));
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| *k == "WWW-Authenticate" && v == "Basic realm=\"skychat\"")
    );
    // "me:s3cret" in base64.
    let ok = [host, ("authorization", "Basic bWU6czNjcmV0")];
    assert_eq!(run(&h, req("GET", "/status", &ok)).status, 200);
    // "me:wrong"
    let wrong = [host, ("authorization", "Basic bWU6d3Jvbmc=")];
    assert_eq!(run(&h, req("GET", "/status", &wrong)).status, 401);
}
