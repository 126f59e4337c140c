//! Per-app settings: what the launcher needs to know about one app beyond its compiled-in
//! [`AppDef`](super::AppDef). `visor::config` parses `launcher.apps[]` into [`AppEntry`]s; the
//! app layer never reads the daemon's config file format.

/// When the launcher restarts an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart when it fails.
    OnFailure,
    /// Restart whenever it stops.
    Always,
}

impl RestartPolicy {
    /// Parses `never`, `on-failure` or `always`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "never" => Some(RestartPolicy::Never),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }

    /// The policy's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

/// One `launcher.apps[]` entry: per-app settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEntry {
    /// The app's name (as in the compiled-in table).
    pub name: String,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Start with the visor.
    pub auto_start: bool,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// Apps that must be running for this one to start (added to the built-in ones).
    pub requires: Vec<String>,
    /// Apps to start before this one, if they can.
    pub wants: Vec<String>,
    /// How the app's dials reach peers (`route`; default `auto`): see
    /// [`RoutePolicy`](crate::router::policy::RoutePolicy).
    #[cfg(feature = "skynet")]
    pub route: crate::router::policy::RoutePolicy,
}
