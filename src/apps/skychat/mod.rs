//! skychat (issue 14): modules owned by the HTTP helper; the engine branch adds the rest.

pub mod auth;
pub mod http;
pub mod web;
