//! A visor on the test's own discovery and relay, for the tests of apps that talk between
//! two visors (skysocks, the resolvers, port forwarding): its directory, config and PK.

use std::path::PathBuf;

use super::skychat::config_field;
use super::visor::{Visor, free_port, start_visor, tmp, write_config};

/// A visor's directory and config, joined to the test network.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pk: String,
}

impl Node {
    /// A config in a fresh directory `<prefix>-<name>`, on `disc` and `relay` (`pk@addr`), on
    /// a free stcp port; `apps`: more `launcher.apps` entries, each after a comma.
    pub fn new(prefix: &str, name: &str, disc: &str, relay: &str, apps: &str) -> Node {
        let dir = tmp(&format!("{prefix}-{name}"));
        // skychat off: two visors on one machine would both want 127.0.0.1:8001.
        let apps = format!(r#"[{{"name": "skychat", "auto_start": false}}{apps}]"#);
        let config = write_config(&dir, None, &apps);
        let mut cfg = std::fs::read_to_string(&config).unwrap();
        for (from, to) in [
            (
                "\"discovery\": \"\"".to_string(),
                format!("\"discovery\": \"{disc}\""),
            ),
            (
                "\"servers\": []".to_string(),
                format!("\"servers\": [\"{relay}\"]"),
            ),
            (
                "\"listen\": \"127.0.0.1:0\"".to_string(),
                format!("\"listen\": \"127.0.0.1:{}\"", free_port()),
            ),
        ] {
            assert!(cfg.contains(&from), "{from} in {cfg}");
            cfg = cfg.replacen(&from, &to, 1);
        }
        std::fs::write(&config, &cfg).unwrap();
        Node {
            pk: config_field(&cfg, "pk"),
            dir,
            config,
        }
    }

    /// A persistent stcp transport to `to`, from the config.
    pub fn transport_to(&self, to: &Node) {
        let cfg = std::fs::read_to_string(&self.config).unwrap();
        let cfg = cfg.replacen(
            "\"transports\": []",
            &format!(
                "\"transports\": [{{\"pk\": \"{}\", \"type\": \"stcp\"}}]",
                to.pk
            ),
            1,
        );
        std::fs::write(&self.config, cfg).unwrap();
    }

    /// Starts the visor.
    pub fn start(&self) -> Visor {
        start_visor(&self.dir, Some(&self.config))
    }
}
