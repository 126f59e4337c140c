//! JSON helpers on top of miniserde's `Value`: a reader that names the field a problem is in
//! (`dmsg.sessions_count: expected a number, got a string`), refuses unknown fields, and a
//! pretty printer that keeps fields in the order they were written.
//!
//! miniserde's own derive reports only "error"; config files and HTTP bodies need the field.

use core::fmt;
use std::collections::BTreeSet;

use miniserde::json::{self, Number, Object, Value};

/// A JSON problem, located by its dotted path (`launcher.apps[2].name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Dotted path of the field; empty for the document itself.
    pub path: String,
    /// What is wrong with it.
    pub msg: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "field `{}`: {}", self.path, self.msg)
        }
    }
}

impl std::error::Error for JsonError {}

/// Parses a document that must be a JSON object.
pub fn parse_object(text: &str) -> Result<Object, JsonError> {
    let v: Value = json::from_str(text).map_err(|_| JsonError {
        path: String::new(),
        msg: "not valid JSON".into(),
    })?;
    match v {
        Value::Object(o) => Ok(o),
        other => Err(JsonError {
            path: String::new(),
            msg: format!("expected a JSON object, got {}", kind(&other)),
        }),
    }
}

/// The JSON type name of a value, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads fields of one object, tracking which were used so unknown ones can be reported.
#[derive(Debug)]
pub struct Fields<'a> {
    obj: &'a Object,
    path: String,
    used: BTreeSet<&'a str>,
}

impl<'a> Fields<'a> {
    /// Reader over `obj`, whose own path is `path` (empty for the document root).
    pub fn new(obj: &'a Object, path: impl Into<String>) -> Self {
        Fields {
            obj,
            path: path.into(),
            used: BTreeSet::new(),
        }
    }

    /// The dotted path of field `key` in this object.
    pub fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// An error about field `key`.
    pub fn err(&self, key: &str, msg: impl Into<String>) -> JsonError {
        JsonError {
            path: self.path_of(key),
            msg: msg.into(),
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        self.used.insert(key);
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn required(&mut self, key: &'a str) -> Result<&'a Value, JsonError> {
        self.get(key)
            .ok_or_else(|| self.err(key, "missing (required)"))
    }

    fn wrong(&self, key: &str, want: &str, v: &Value) -> JsonError {
        self.err(key, format!("expected {want}, got {}", kind(v)))
    }

    /// True when the object has `key`, not `null` (without marking it read).
    pub fn has(&self, key: &str) -> bool {
        !matches!(self.obj.get(key), None | Some(Value::Null))
    }

    /// A required string.
    pub fn str(&mut self, key: &'a str) -> Result<&'a str, JsonError> {
        match self.required(key)? {
            Value::String(s) => Ok(s),
            v => Err(self.wrong(key, "a string", v)),
        }
    }

    /// An optional string.
    pub fn opt_str(&mut self, key: &'a str) -> Result<Option<&'a str>, JsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, key: &'a str) -> Result<Option<bool>, JsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "true or false", v)),
        }
    }

    /// An optional non-negative integer no larger than `max`.
    pub fn opt_u64(&mut self, key: &'a str, max: u64) -> Result<Option<u64>, JsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(Number::U64(n))) if *n <= max => Ok(Some(*n)),
            Some(Value::Number(n)) => {
                Err(self.err(key, format!("expected an integer from 0 to {max}, got {n}")))
            }
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// An optional array; returns the items with their paths.
    pub fn opt_array(&mut self, key: &'a str) -> Result<Vec<(String, &'a Value)>, JsonError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => {
                let base = self.path_of(key);
                Ok(a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{base}[{i}]"), v))
                    .collect())
            }
            Some(v) => Err(self.wrong(key, "an array", v)),
        }
    }

    /// An optional array of strings.
    pub fn opt_str_array(&mut self, key: &'a str) -> Result<Vec<(String, &'a str)>, JsonError> {
        self.opt_array(key)?
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok((path, s.as_str())),
                other => Err(JsonError {
                    path,
                    msg: format!("expected a string, got {}", kind(other)),
                }),
            })
            .collect()
    }

    /// An optional nested object, as a reader of its own.
    pub fn opt_object(&mut self, key: &'a str) -> Result<Option<Fields<'a>>, JsonError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(Fields::new(o, self.path_of(key)))),
            Some(v) => Err(self.wrong(key, "an object", v)),
        }
    }

    /// Fails on the first field that no accessor asked for (catches typos in hand edits).
    pub fn deny_unknown(&self) -> Result<(), JsonError> {
        match self.obj.keys().find(|k| !self.used.contains(k.as_str())) {
            Some(k) => {
                let mut known: Vec<&str> = self.used.iter().copied().collect();
                crate::sort::sort(&mut known);
                Err(self.err(k, format!("unknown field (known: {})", known.join(", "))))
            }
            None => Ok(()),
        }
    }
}

/// An object whose fields print in insertion order (miniserde's `Object` sorts them).
#[derive(Debug, Default)]
pub struct Ordered(Vec<(String, Out)>);

/// A value for [`Ordered`] output.
#[derive(Debug)]
pub enum Out {
    /// A string.
    Str(String),
    /// An unsigned integer.
    U64(u64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
    /// An array.
    Arr(Vec<Out>),
    /// A nested ordered object.
    Obj(Ordered),
    /// JSON text written as it is: the caller has checked it is one JSON value (a body a
    /// peer sent, parsed once and passed on unchanged).
    Raw(String),
}

impl Ordered {
    /// An empty object.
    pub fn new() -> Self {
        Ordered(Vec::new())
    }

    /// Appends a field.
    pub fn field(mut self, key: &str, v: Out) -> Self {
        self.0.push((key.to_string(), v));
        self
    }

    /// Pretty-printed JSON with two-space indentation and a trailing newline.
    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        write_obj(&mut s, self, 0);
        s.push('\n');
        s
    }

    /// Compact JSON on one line.
    pub fn to_compact(&self) -> String {
        let mut s = String::new();
        write_compact_obj(&mut s, self);
        s
    }
}

fn indent(s: &mut String, n: usize) {
    for _ in 0..n {
        s.push_str("  ");
    }
}

fn write_str(s: &mut String, v: &str) {
    s.push_str(&json::to_string(&v.to_string()));
}

fn write_obj(s: &mut String, o: &Ordered, depth: usize) {
    if o.0.is_empty() {
        s.push_str("{}");
        return;
    }
    s.push_str("{\n");
    for (i, (k, v)) in o.0.iter().enumerate() {
        indent(s, depth + 1);
        write_str(s, k);
        s.push_str(": ");
        write_val(s, v, depth + 1);
        if i + 1 < o.0.len() {
            s.push(',');
        }
        s.push('\n');
    }
    indent(s, depth);
    s.push('}');
}

fn write_val(s: &mut String, v: &Out, depth: usize) {
    match v {
        Out::Str(x) => write_str(s, x),
        Out::U64(n) => s.push_str(&n.to_string()),
        Out::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Out::Null => s.push_str("null"),
        Out::Raw(t) => s.push_str(t.trim()),
        Out::Obj(o) => write_obj(s, o, depth),
        Out::Arr(items) if items.is_empty() => s.push_str("[]"),
        Out::Arr(items) => {
            s.push_str("[\n");
            for (i, it) in items.iter().enumerate() {
                indent(s, depth + 1);
                write_val(s, it, depth + 1);
                if i + 1 < items.len() {
                    s.push(',');
                }
                s.push('\n');
            }
            indent(s, depth);
            s.push(']');
        }
    }
}

fn write_compact_obj(s: &mut String, o: &Ordered) {
    s.push('{');
    for (i, (k, v)) in o.0.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_str(s, k);
        s.push(':');
        write_compact(s, v);
    }
    s.push('}');
}

fn write_compact(s: &mut String, v: &Out) {
    match v {
        Out::Str(x) => write_str(s, x),
        Out::U64(n) => s.push_str(&n.to_string()),
        Out::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Out::Null => s.push_str("null"),
        Out::Raw(t) => s.push_str(t.trim()),
        Out::Obj(o) => write_compact_obj(s, o),
        Out::Arr(items) => {
            s.push('[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                write_compact(s, it);
            }
            s.push(']');
        }
    }
}

/// Convenience: an array of strings.
pub fn str_array<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Out {
    Out::Arr(items.into_iter().map(|s| Out::Str(s.into())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_kinds_in_errors() {
        let o = parse_object(r#"{"a": {"b": "x"}, "n": -1, "arr": [1, "s"]}"#).unwrap();
        let mut f = Fields::new(&o, "");
        let mut a = f.opt_object("a").unwrap().unwrap();
        assert_eq!(
            a.opt_u64("b", 10).unwrap_err().to_string(),
            "field `a.b`: expected a number, got a string"
        );
        assert_eq!(
            f.opt_u64("n", 10).unwrap_err().to_string(),
            "field `n`: expected an integer from 0 to 10, got -1"
        );
        assert_eq!(
            f.opt_str_array("arr").unwrap_err().to_string(),
            "field `arr[0]`: expected a string, got a number"
        );
        assert_eq!(
            f.str("missing").unwrap_err().to_string(),
            "field `missing`: missing (required)"
        );
    }

    #[test]
    fn unknown_fields_reported() {
        let o = parse_object(r#"{"known": true, "typo": 1}"#).unwrap();
        let mut f = Fields::new(&o, "sec");
        assert_eq!(f.opt_bool("known").unwrap(), Some(true));
        let e = f.deny_unknown().unwrap_err();
        assert_eq!(e.path, "sec.typo");
    }

    #[test]
    fn not_an_object() {
        assert!(parse_object("[1]").unwrap_err().msg.contains("an array"));
        assert_eq!(parse_object("{").unwrap_err().msg, "not valid JSON");
    }

    #[test]
    fn ordered_output_round_trips() {
        let o = Ordered::new()
            .field("z", Out::Str("a\"b".into()))
            .field("a", Out::U64(3))
            .field("l", str_array(["x", "y"]))
            .field("e", Out::Arr(vec![]))
            .field("o", Out::Obj(Ordered::new().field("t", Out::Bool(true))));
        let pretty = o.to_pretty();
        assert!(pretty.find("\"z\"").unwrap() < pretty.find("\"a\"").unwrap());
        let back = parse_object(&pretty).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(
            o.to_compact(),
            r#"{"z":"a\"b","a":3,"l":["x","y"],"e":[],"o":{"t":true}}"#
        );
    }
}
