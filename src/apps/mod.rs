//! The apps, one module each behind its cargo feature `app-<name>` (DESIGN.md §5), and the
//! static table of those compiled in ([`APPS`]). Each app exposes an `AppDef` (the contract
//! of `crate::app`); the launcher is handed [`APPS`] as data, so `app` never names an app.
//! The `test-apps` feature (tests only, never in a board build) adds four small apps whose
//! behaviour is set by their arguments, so the integration tests can drive the launcher's
//! semantics through the real binary.

#[cfg(feature = "app-hypervisor")]
pub mod hypervisor;
#[cfg(feature = "app-logserver")]
pub mod logserver;
#[cfg(feature = "app-pty")]
pub mod pty;
#[cfg(feature = "app-resolver")]
pub mod resolver;
#[cfg(feature = "app-skychat")]
pub mod skychat;
#[cfg(feature = "app-skynet-fwd")]
pub mod skynet_fwd;
#[cfg(feature = "app-skysocks")]
pub mod skysocks;
#[cfg(feature = "app-skysocks-client")]
pub mod skysocks_client;
#[cfg(any(
    feature = "app-skysocks",
    feature = "app-skysocks-client",
    feature = "app-resolver",
    feature = "app-skynet-fwd"
))]
pub mod socks5;
#[cfg(feature = "test-apps")]
mod testapps;
#[cfg(feature = "app-vpn")]
pub mod vpn;

use crate::app::AppDef;

/// Every app compiled into this build.
pub static APPS: &[&AppDef] = &[
    #[cfg(feature = "app-logserver")]
    &logserver::DEF,
    #[cfg(feature = "app-pty")]
    &pty::app::DEF,
    #[cfg(feature = "app-skychat")]
    &skychat::app::DEF,
    #[cfg(feature = "app-skysocks")]
    &skysocks::DEF,
    #[cfg(feature = "app-skysocks-client")]
    &skysocks_client::DEF,
    #[cfg(feature = "app-resolver")]
    &resolver::DEF,
    #[cfg(feature = "app-skynet-fwd")]
    &skynet_fwd::srv::DEF,
    #[cfg(feature = "app-skynet-fwd")]
    &skynet_fwd::client::DEF,
    #[cfg(feature = "app-vpn")]
    &vpn::server::DEF,
    #[cfg(feature = "app-vpn")]
    &vpn::client::DEF,
    #[cfg(feature = "app-hypervisor")]
    &hypervisor::DEF,
    #[cfg(feature = "test-apps")]
    &testapps::TEST_A,
    #[cfg(feature = "test-apps")]
    &testapps::TEST_B,
    #[cfg(feature = "test-apps")]
    &testapps::TEST_C,
    #[cfg(feature = "test-apps")]
    &testapps::TEST_CRIT,
];

/// The app named `name`.
pub fn find(name: &str) -> Option<&'static AppDef> {
    APPS.iter().copied().find(|d| d.name == name)
}

/// The names of every compiled-in app, comma-separated (for error messages).
pub fn names() -> String {
    let v: Vec<&str> = APPS.iter().map(|d| d.name).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
