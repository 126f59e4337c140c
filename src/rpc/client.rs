//! The visor RPC client: one [`Request`] in, the answer's JSON object out (typed with
//! [`Body`]). It knows the address and the bearer token; finding them (flags, environment,
//! the visor's state directory) is the caller's business.

use core::fmt;

use miniserde::json::{Object, Value};

use super::{Body, Request};
use crate::http::client::{HttpUrl, request_with};
use crate::http::json::{JsonError, parse_object};

/// The most body an RPC answer may have.
const MAX_BODY: usize = 1 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The address does not make a URL (the reason).
    Address(String),
    /// Nothing answered, or the connection failed (the reason).
    Unreachable(String),
    /// 401: no token, or not this visor's.
    Unauthorized,
    /// The body is not a JSON object.
    NotJson(JsonError),
    /// The visor refused: its status and `error` message (`HTTP <status>` when it sent none).
    Refused(u16, String),
    /// A 2xx body without the fields of its type.
    Body(JsonError),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Address(e) => write!(f, "bad RPC address: {e}"),
            RpcError::Unreachable(e) => write!(f, "no visor answers ({e})"),
            RpcError::Unauthorized => f.write_str("the visor refused the token (401)"),
            RpcError::NotJson(e) => write!(f, "visor sent a body that is not JSON ({e})"),
            RpcError::Refused(_, m) => f.write_str(m),
            RpcError::Body(e) => write!(f, "visor sent an answer this client cannot read ({e})"),
        }
    }
}

impl std::error::Error for RpcError {}

/// A client of one visor's RPC.
#[derive(Debug, Clone)]
pub struct RpcClient {
    addr: String,
    auth: Option<String>,
}

impl RpcClient {
    /// A client of the RPC on `addr` (`host:port`), sending `token` if there is one.
    pub fn new(addr: impl Into<String>, token: Option<&str>) -> RpcClient {
        RpcClient {
            addr: addr.into(),
            auth: token.map(|t| format!("Bearer {t}")),
        }
    }

    /// The RPC address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The `Authorization` header value, if a token was given.
    pub fn authorization(&self) -> Option<&str> {
        self.auth.as_deref()
    }

    /// Sends `req`; `Ok` is the JSON object of a 2xx answer.
    pub async fn call(&self, req: &Request) -> Result<Object, RpcError> {
        let method = req.method();
        let url = HttpUrl::parse(&format!("http://{}{}", self.addr, req.path()))
            .map_err(|e| RpcError::Address(e.to_string()))?;
        let bytes = req.body();
        let body: Option<&[u8]> = (method != "GET").then_some(&bytes);
        let headers: Vec<(&str, &str)> = self
            .auth
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        let resp = request_with(&url, method, &headers, body, MAX_BODY, req.timeout())
            .await
            .map_err(|e| RpcError::Unreachable(e.to_string()))?;
        if resp.status == 401 {
            return Err(RpcError::Unauthorized);
        }
        let obj = parse_object(&resp.text()).map_err(RpcError::NotJson)?;
        if !(200..300).contains(&resp.status) {
            let msg = match obj.get("error") {
                Some(Value::String(s)) => s.clone(),
                _ => format!("HTTP {}", resp.status),
            };
            return Err(RpcError::Refused(resp.status, msg));
        }
        Ok(obj)
    }

    /// Sends `req` and reads the answer as a `T`.
    pub async fn get<T: Body>(&self, req: &Request) -> Result<T, RpcError> {
        T::from_object(&self.call(req).await?).map_err(RpcError::Body)
    }
}
