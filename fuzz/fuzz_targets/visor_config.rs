//! `skywire-config.json` parsed from arbitrary text, then the launcher plan made from its
//! `launcher.apps`. Invariants: no panic; a config that parses re-serialises to JSON that
//! parses back to the same settings; planning either fails with a message or places every
//! app in a wave after all of its dependencies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skywire::app::launcher::plan;
use skywire::apps::APPS;
use skywire::visor::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(c) = Config::parse(&text) else {
        return;
    };
    let again = Config::parse(&c.to_json()).expect("our JSON parses");
    assert_eq!(again.keys.public(), c.keys.public());
    assert_eq!(again.dmsg, c.dmsg);
    assert_eq!(again.apps, c.apps);
    assert_eq!(again.cli_addr, c.cli_addr);
    assert_eq!(again.hypervisors, c.hypervisors);
    assert_eq!(again.pty_whitelist, c.pty_whitelist);
    match plan(APPS, &c.apps) {
        Err(msg) => assert!(!msg.is_empty()),
        Ok(p) => {
            for a in &p {
                for d in &a.deps {
                    let dep = p
                        .iter()
                        .find(|x| x.def.name == d.name)
                        .expect("known dependency");
                    assert!(dep.wave < a.wave, "{} before {}", d.name, a.def.name);
                }
            }
        }
    }
});
