//! The embedded page of skychat's HTTP surface (`GET /`): plain DOM, no framework. It lists
//! the peers (`/history/peers` + `/aliases`), shows a conversation (`/history?peer=`), sends
//! with `POST /message` (showing "acked in N ms" or the reason) and follows `/sse` live. It
//! runs on the `skychat` cookie that `GET /login?token=` sets.

/// The page.
pub const INDEX: &str = include_str!("web/index.html");

/// What `GET /` answers without a credential.
pub const NO_CREDENTIAL: &str = "<!doctype html><meta charset=utf-8><title>skychat</title>\
<p>This page needs the skychat token. Open the link that <code>skywire cli skychat web</code> \
prints (it logs this browser in with a cookie).</p>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_the_elements_the_browser_test_uses_and_stays_small() {
        for id in [
            "id=\"to\"",
            "id=\"msg\"",
            "id=\"send\"",
            "id=\"result\"",
            "id=\"log\"",
            "id=\"peers\"",
        ] {
            assert!(INDEX.contains(id), "{id} missing");
        }
        assert!(INDEX.contains("EventSource('/sse')"));
        assert!(INDEX.len() < 15 * 1024, "{} bytes", INDEX.len());
    }
}
