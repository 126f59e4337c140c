//! The discovery client: the HTTP API of [`super::disc`] from the caller's side. Each call is
//! one short request (`Connection: close`) bounded by a timeout; errors carry the server's own
//! explanation.

use std::fmt;
use std::time::Duration;

use super::entry::{Deletion, Entry, EntryError};
use crate::crypto::PublicKey;
use crate::http::client::{HttpError, HttpResponse, HttpUrl, request};
use crate::http::json::{Fields, parse_object};

/// Largest response accepted from discovery.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Why a discovery call failed.
#[derive(Debug)]
pub enum DiscClientError {
    /// Discovery could not be reached or answered garbage.
    Http(HttpError),
    /// Discovery refused the request (status and its error message).
    Refused(u16, String),
    /// An entry in the answer does not parse or verify.
    BadEntry(EntryError),
}

impl fmt::Display for DiscClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscClientError::Http(e) => write!(f, "discovery: {e}"),
            DiscClientError::Refused(s, m) => write!(f, "discovery refused ({s}): {m}"),
            DiscClientError::BadEntry(e) => write!(f, "discovery sent a bad entry: {e}"),
        }
    }
}

impl std::error::Error for DiscClientError {}

impl From<HttpError> for DiscClientError {
    fn from(e: HttpError) -> Self {
        DiscClientError::Http(e)
    }
}

/// A discovery service at a base URL.
#[derive(Debug, Clone)]
pub struct DiscClient {
    base: HttpUrl,
    timeout: Duration,
}

fn refused(r: &HttpResponse) -> DiscClientError {
    let msg = parse_object(&r.text())
        .ok()
        .and_then(|o| {
            let mut f = Fields::new(&o, "");
            f.opt_str("error").ok().flatten().map(str::to_string)
        })
        .unwrap_or_else(|| r.text().chars().take(200).collect());
    DiscClientError::Refused(r.status, msg)
}

impl DiscClient {
    /// A client for the service at `url` (`http://host:port`).
    pub fn new(url: &str) -> Result<DiscClient, HttpError> {
        Ok(DiscClient {
            base: HttpUrl::parse(url)?,
            timeout: Duration::from_secs(10),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &HttpUrl {
        &self.base
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, DiscClientError> {
        Ok(request(
            &self.base.join(path),
            method,
            body,
            MAX_RESPONSE,
            self.timeout,
        )
        .await?)
    }

    /// The `/health` document, as text.
    pub async fn health(&self) -> Result<String, DiscClientError> {
        let r = self.call("GET", "/health", None).await?;
        if r.status != 200 {
            return Err(refused(&r));
        }
        Ok(r.text())
    }

    /// The verified entry of `pk`, or `None` if discovery has none.
    pub async fn entry(&self, pk: &PublicKey) -> Result<Option<Entry>, DiscClientError> {
        let r = self.call("GET", &format!("/entries/{pk}"), None).await?;
        match r.status {
            200 => {
                let e = Entry::from_json(&r.text()).map_err(DiscClientError::BadEntry)?;
                e.verify().map_err(DiscClientError::BadEntry)?;
                if e.pk != *pk {
                    return Err(DiscClientError::BadEntry(EntryError::BadSignature));
                }
                Ok(Some(e))
            }
            404 => Ok(None),
            _ => Err(refused(&r)),
        }
    }

    /// Publishes a signed entry.
    pub async fn put(&self, e: &Entry) -> Result<(), DiscClientError> {
        let body = e.to_json().to_compact();
        let r = self.call("POST", "/entries", Some(body.as_bytes())).await?;
        if r.status != 200 {
            return Err(refused(&r));
        }
        Ok(())
    }

    /// Deletes an entry with a signed deletion.
    pub async fn delete(&self, d: &Deletion) -> Result<(), DiscClientError> {
        let body = d.to_json().to_compact();
        let r = self
            .call(
                "DELETE",
                &format!("/entries/{}", d.pk),
                Some(body.as_bytes()),
            )
            .await?;
        if r.status != 200 {
            return Err(refused(&r));
        }
        Ok(())
    }

    /// Relays with free sessions, most free first (verified; bad ones are skipped).
    pub async fn relays(&self) -> Result<Vec<Entry>, DiscClientError> {
        let r = self.call("GET", "/relays", None).await?;
        if r.status != 200 {
            return Err(refused(&r));
        }
        let obj = parse_object(&r.text()).map_err(|e| DiscClientError::BadEntry(e.into()))?;
        let mut f = Fields::new(&obj, "");
        let items = f
            .opt_array("relays")
            .map_err(|e| DiscClientError::BadEntry(e.into()))?;
        let mut out = Vec::new();
        for (path, v) in items {
            if let miniserde::json::Value::Object(o) = v {
                let mut ef = Fields::new(o, path);
                if let Ok(e) = Entry::from_fields(&mut ef)
                    && e.verify().is_ok()
                    && e.is_relay()
                {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }
}
