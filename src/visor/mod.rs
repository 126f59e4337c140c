//! Phase-1 visor core. So far: the configuration file.

pub mod config;
