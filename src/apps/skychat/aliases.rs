//! The alias book: short names for PKs, kept in `<app dir>/aliases.json`
//! (`{"aliases":[{"name":"bob","pk":"02…"}]}`), rewritten (tmp + rename) on every change.

use std::path::PathBuf;
use std::sync::Mutex;

use miniserde::json::Value;

use crate::crypto::PublicKey;
use crate::http::json::{Ordered, Out, parse_object};

/// Longest alias name.
pub const MAX_NAME: usize = 64;
/// Most aliases kept.
pub const MAX_ALIASES: usize = 1_000;

/// The book.
#[derive(Debug, Default)]
pub struct Aliases {
    file: Option<PathBuf>,
    list: Mutex<Vec<(String, PublicKey)>>,
}

impl Aliases {
    /// A book kept only in memory.
    pub fn in_memory() -> Aliases {
        Aliases::default()
    }

    /// Loads the book in `file` (a missing file is an empty book).
    pub fn load(file: PathBuf) -> Result<Aliases, String> {
        let mut list = Vec::new();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let o = parse_object(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                if let Some(Value::Array(items)) = o.get("aliases") {
                    for it in items {
                        if let Value::Object(a) = it
                            && let (Some(Value::String(n)), Some(Value::String(pk))) =
                                (a.get("name"), a.get("pk"))
                            && let Ok(pk) = PublicKey::from_hex(pk)
                        {
                            list.push((n.clone(), pk));
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
        Ok(Aliases {
            file: Some(file),
            list: Mutex::new(list),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, PublicKey)>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every alias, in the order added.
    pub fn list(&self) -> Vec<(String, PublicKey)> {
        self.lock().clone()
    }

    /// A PK (66 hex digits) or an alias, as a PK.
    pub fn resolve(&self, s: &str) -> Option<PublicKey> {
        if let Ok(pk) = PublicKey::from_hex(s) {
            return Some(pk);
        }
        self.lock().iter().find(|(n, _)| n == s).map(|(_, pk)| *pk)
    }

    /// The alias of `pk`, if it has one.
    pub fn name_of(&self, pk: &PublicKey) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, p)| p == pk)
            .map(|(n, _)| n.clone())
    }

    /// Sets `name` to `pk` (replacing what it named).
    pub fn set(&self, name: &str, pk: PublicKey) -> Result<(), String> {
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "alias {name:?}: 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
            ));
        }
        let mut g = self.lock();
        if let Some(e) = g.iter_mut().find(|(n, _)| n == name) {
            e.1 = pk;
        } else {
            if g.len() >= MAX_ALIASES {
                return Err(format!("the alias book is full ({MAX_ALIASES})"));
            }
            g.push((name.to_string(), pk));
        }
        self.save(&g)
    }

    /// Removes `name`; false if there was none.
    pub fn remove(&self, name: &str) -> Result<bool, String> {
        let mut g = self.lock();
        let before = g.len();
        g.retain(|(n, _)| n != name);
        if g.len() == before {
            return Ok(false);
        }
        self.save(&g).map(|_| true)
    }

    fn save(&self, list: &[(String, PublicKey)]) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let items = list
            .iter()
            .map(|(n, pk)| {
                Out::Obj(
                    Ordered::new()
                        .field("name", Out::Str(n.clone()))
                        .field("pk", Out::Str(pk.to_string())),
                )
            })
            .collect();
        let text = Ordered::new().field("aliases", Out::Arr(items)).to_pretty();
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, file))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[test]
    fn aliases_persist() {
        let dir = std::env::temp_dir().join(format!("skychat-alias-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("aliases.json");
        let _ = std::fs::remove_file(&f);
        let pk = *Keypair::from_seed(&[3; 32]).public();
        let a = Aliases::load(f.clone()).unwrap();
        assert!(a.set("bad name", pk).is_err());
        a.set("bob", pk).unwrap();
        let b = Aliases::load(f.clone()).unwrap();
        assert_eq!(b.resolve("bob"), Some(pk));
        assert_eq!(b.resolve(&pk.to_string()), Some(pk));
        assert_eq!(b.name_of(&pk).as_deref(), Some("bob"));
        assert!(b.remove("bob").unwrap());
        assert!(!b.remove("bob").unwrap());
        assert_eq!(Aliases::load(f).unwrap().list(), vec![]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
