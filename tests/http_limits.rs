//! Idle sockets must not lock anyone out (issue 11, finding 7): the real `skywire visor` and
//! `skywire dmsg disc` on 127.0.0.1, with hundreds of connections that connect and never send.
//! Both servers limit connections per source address and, at a limit, close the longest-idle
//! connection to make room for the new one instead of refusing it.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::visor::*;

/// `n` connections to `addr` that send nothing.
fn hold_idle(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"))
        })
        .collect()
}

/// How many of `conns` the server has closed (EOF within a few seconds each; the server
/// closes shed connections as soon as it accepts their replacements, so this only waits on
/// ones that stay open).
fn closed_by_server(conns: &mut [TcpStream]) -> usize {
    let mut n = 0;
    for s in conns.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 64];
        let r = s.read(&mut b);
        if matches!(r, Ok(0))
            || matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        {
            n += 1;
        }
    }
    n
}

#[test]
fn three_hundred_idle_connections_do_not_lock_out_the_cli() {
    let dir = tmp("idle-rpc");
    let c = write_config(&dir, None, "[]");
    let v = start_visor(&dir, Some(&c));
    v.info();
    let mut idle = hold_idle(&v.rpc, 300);
    for _ in 0..3 {
        let o = v.cli(&["info", "--json"]);
        assert!(
            o.status.success(),
            "with 300 idle sockets held: {}",
            text(&o)
        );
        assert_eq!(json_field(&String::from_utf8_lossy(&o.stdout), "pk"), v.pk);
    }
    // All from 127.0.0.1: at most 32 of them are kept (the CLI's own are gone by now).
    let closed = closed_by_server(&mut idle[..268]);
    assert_eq!(closed, 268, "the oldest idle connections are shed");
}

/// curl from `source` (a local address to bind); returns the status (0 when none).
fn curl_from(source: &str, url: &str) -> u16 {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code}"])
        .args(["--interface", source, url])
        .output()
        .expect("curl is needed (Debian package curl)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn idle_connections_from_one_address_do_not_lock_out_discovery() {
    let (_d, url) = common::dmsg::start_disc();
    let addr = url.strip_prefix("http://").unwrap().to_string();
    let url = format!("http://{addr}/health");
    assert_eq!(curl_from("127.0.0.1", &url), 200);
    // The old global cap: 256 idle connections from 127.0.0.1.
    let mut idle = hold_idle(&addr, 256);
    // Another address is served (Linux routes all of 127/8 on lo)...
    for _ in 0..3 {
        assert_eq!(curl_from("127.0.0.2", &url), 200, "from 127.0.0.2");
    }
    // ... and so is the flooding address itself, in place of its idle sockets.
    assert_eq!(curl_from("127.0.0.1", &url), 200, "from 127.0.0.1");
    assert_eq!(closed_by_server(&mut idle[..224]), 224);
}
