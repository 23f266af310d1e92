//! YAML as upstream reads it: `sigs.k8s.io/yaml` over go-yaml v2, that is YAML 1.1 scalars
//! (`yes`/`no`/`on`/`off` are booleans, `0644` is octal, `1_000` is an int), the first document
//! only, anchors, aliases and `<<` merges, and non-string keys turned into strings. Used for
//! static pod manifests and the KubeletConfiguration file, where YAML 1.2's readings (`0644`
//! as a string, `no` as a string) would reject or change what the upstream kubelet accepts.
//!
//! The syntax is yaml-rust2's event parser; only the resolution of plain scalars is ours.

use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use thiserror::Error;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum YamlError {
    #[error("yaml: {0}")]
    Syntax(String),
    #[error("yaml: {0}")]
    Value(String),
    #[error("{0}")]
    Json(String),
}

/// Nesting beyond this is refused: the values are dropped and deserialized recursively.
pub const MAX_DEPTH: usize = 1000;

/// The first document of `text` as JSON, as upstream's `yaml.YAMLToJSON`. The events are
/// read in a loop (the parser's own `load` recurses per nesting level), nesting is bounded
/// by [`MAX_DEPTH`], and alias expansion by go-yaml's ratio ("excessive aliasing").
pub fn to_json(text: &str) -> Result<Value, YamlError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    while !b.done && b.error.is_none() {
        let (ev, mark) = parser
            .next_token()
            .map_err(|e| YamlError::Syntax(e.to_string()))?;
        let end = ev == Event::StreamEnd;
        b.on_event(ev, mark);
        if end {
            break;
        }
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.root.unwrap_or(Value::Null))
}

/// `to_json` from bytes (UTF-8).
pub fn bytes_to_json(bytes: &[u8]) -> Result<Value, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| YamlError::Syntax(e.to_string()))?;
    to_json(text)
}

/// Deserializes the first document of `text`.
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_json::from_value(to_json(text)?).map_err(|e| YamlError::Json(e.to_string()))
}

/// `value` as a YAML document (block style; strings that would read back as something else
/// are quoted).
pub fn to_string<T: serde::Serialize>(value: &T) -> Result<String, YamlError> {
    let v = serde_json::to_value(value).map_err(|e| YamlError::Json(e.to_string()))?;
    let mut out = String::new();
    yaml_rust2::YamlEmitter::new(&mut out)
        .dump(&to_yaml(&v))
        .map_err(|e| YamlError::Value(format!("{e:?}")))?;
    // The emitter starts with a document marker and ends without a newline.
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    Ok(format!("{body}\n"))
}

fn to_yaml(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml).collect()),
        Value::Object(m) => Yaml::Hash(
            m.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v)))
                .collect(),
        ),
    }
}

enum Frame {
    /// The items, the anchor, and the node count when it started (for the anchor's size).
    Seq(Vec<Value>, usize, u64),
    /// The mapping, its anchor, the key waiting for its value, and the node count.
    Map(Map<String, Value>, usize, Option<Key>, u64),
}

enum Key {
    Str(String),
    Merge,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchor's value and its size in nodes.
    anchors: HashMap<usize, (Value, u64)>,
    root: Option<Value>,
    done: bool,
    error: Option<YamlError>,
    /// go-yaml's counters: nodes decoded, and those that came from aliases.
    decoded: u64,
    aliased: u64,
}

/// go-yaml v2's `allowedAliasRatio`.
fn allowed_alias_ratio(decoded: u64) -> f64 {
    const LOW: f64 = 400_000.0;
    const HIGH: f64 = 4_000_000.0;
    let d = decoded as f64;
    if d <= LOW {
        0.99
    } else if d >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((d - LOW) / (HIGH - LOW))
    }
}

impl Builder {
    fn fail(&mut self, e: YamlError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Counts `n` decoded nodes (`aliased` of them from an alias), as go-yaml's `unmarshal`.
    fn count(&mut self, n: u64, aliased: bool) {
        self.decoded = self.decoded.saturating_add(n);
        if aliased {
            self.aliased = self.aliased.saturating_add(n);
        }
        if self.aliased > 100
            && self.decoded > 1000
            && self.aliased as f64 / self.decoded as f64 > allowed_alias_ratio(self.decoded)
        {
            self.fail(YamlError::Value(
                "document contains excessive aliasing".into(),
            ));
        }
    }

    fn open(&mut self, frame: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(YamlError::Value(format!(
                "exceeded max depth of {MAX_DEPTH}"
            )));
            return;
        }
        self.count(1, false);
        self.stack.push(frame);
    }

    /// A finished node: into its parent, or the document.
    fn push(&mut self, v: Value) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(v);
                }
                self.done = true;
            }
            Some(Frame::Seq(items, _, _)) => items.push(v),
            Some(Frame::Map(m, _, key, _)) => match key.take() {
                None => match key_string(&v) {
                    Ok(k) => *key = Some(Key::Str(k)),
                    Err(e) => self.fail(e),
                },
                Some(Key::Str(k)) => {
                    m.insert(k, v);
                }
                Some(Key::Merge) => {
                    let wrong = || {
                        YamlError::Value(
                            "map merge requires map or sequence of maps as the value".into(),
                        )
                    };
                    let sources: Vec<Map<String, Value>> = match v {
                        Value::Object(o) => vec![o],
                        Value::Array(a) => {
                            let n = a.len();
                            let maps: Vec<_> = a
                                .into_iter()
                                .filter_map(|x| match x {
                                    Value::Object(o) => Some(o),
                                    _ => None,
                                })
                                .collect();
                            if maps.len() != n {
                                return self.fail(wrong());
                            }
                            // go-yaml merges the list backwards: earlier maps win.
                            maps.into_iter().rev().collect()
                        }
                        _ => return self.fail(wrong()),
                    };
                    for o in sources {
                        m.extend(o);
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        if self.done || self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, false);
                // Only a plain `<<` in key position merges (go-yaml's `isMerge`).
                if style == TScalarStyle::Plain
                    && tag.is_none()
                    && text == "<<"
                    && let Some(Frame::Map(_, _, key @ None, _)) = self.stack.last_mut()
                {
                    *key = Some(Key::Merge);
                    return;
                }
                let v = match scalar(&text, style, tag.as_ref()) {
                    Ok(v) => v,
                    Err(e) => return self.fail(e),
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, (v.clone(), 1));
                }
                self.push(v);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((v, size)) => {
                    self.count(size, true);
                    if self.error.is_none() {
                        self.push(v);
                    }
                }
                None => self.fail(YamlError::Value(format!("unknown anchor {id}"))),
            },
            Event::SequenceStart(anchor, _) => {
                let at = self.decoded;
                self.open(Frame::Seq(Vec::new(), anchor, at));
            }
            Event::MappingStart(anchor, _) => {
                let at = self.decoded;
                self.open(Frame::Map(Map::new(), anchor, None, at));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor, at)) = self.stack.pop() {
                    let v = Value::Array(items);
                    if anchor > 0 {
                        self.anchors.insert(anchor, (v.clone(), self.decoded - at));
                    }
                    self.push(v);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(m, anchor, _, at)) = self.stack.pop() {
                    let v = Value::Object(m);
                    if anchor > 0 {
                        self.anchors.insert(anchor, (v.clone(), self.decoded - at));
                    }
                    self.push(v);
                }
            }
            Event::DocumentEnd => {
                if !self.stack.is_empty() {
                    self.fail(YamlError::Syntax("unterminated document".into()));
                }
                self.done = true;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

/// A mapping key as `sigs.k8s.io/yaml` writes it into JSON.
fn key_string(v: &Value) -> Result<String, YamlError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(match n.as_f64() {
            Some(f) if n.is_f64() => format_float_32(f),
            _ => n.to_string(),
        }),
        other => Err(YamlError::Value(format!(
            "Unsupported map key of type: {}",
            match other {
                Value::Null => "nil",
                Value::Array(_) => "sequence",
                _ => "mapping",
            }
        ))),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` for the floats a key can hold.
fn format_float_32(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    format!("{}", f as f32)
}

const STR_TAG: &str = "str";

fn tag_suffix(tag: Option<&Tag>) -> Option<&str> {
    let t = tag?;
    match t.handle.as_str() {
        "tag:yaml.org,2002:" | "!!" => Some(t.suffix.as_str()),
        _ => Some(""),
    }
}

/// go-yaml v2's `resolve` for one scalar: quoted and block scalars are strings; plain ones are
/// read as YAML 1.1 does.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, YamlError> {
    let suffix = tag_suffix(tag);
    match suffix {
        // A tag that is not a core one: the text, as go-yaml does.
        Some("") => return Ok(Value::String(text.into())),
        Some(STR_TAG) | Some("binary") => return Ok(Value::String(text.into())),
        _ => {}
    }
    if style != TScalarStyle::Plain && suffix.is_none() {
        return Ok(Value::String(text.into()));
    }
    let resolved = resolve_plain(text)?;
    match (suffix, &resolved) {
        (None, _) => Ok(resolved),
        // A float written as one (`1.0`) is no !!int, even where it prints as an integer.
        (Some("int"), Value::Number(n)) if !n.is_f64() && !text.contains(['.', 'e', 'E']) => {
            Ok(resolved)
        }
        (Some("float"), Value::Number(n)) => Ok(n.as_f64().map(float_value).unwrap_or(resolved)),
        (Some("bool"), Value::Bool(_)) | (Some("null"), Value::Null) => Ok(resolved),
        (Some("timestamp"), Value::String(_)) => Ok(resolved),
        (Some(t), _) => Err(YamlError::Value(format!(
            "cannot decode `{text}` as a !!{t}"
        ))),
    }
}

fn resolve_plain(text: &str) -> Result<Value, YamlError> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Ok(Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Ok(Value::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF"
        | "-.inf" | "-.Inf" | "-.INF" => {
            // JSON has no NaN or infinity: upstream's conversion fails here too.
            return Err(YamlError::Json(format!("json: unsupported value: {text}")));
        }
        _ => {}
    }
    let first = text.as_bytes()[0];
    match first {
        b'.' => Ok(parse_go_float(text)
            .map(float_value)
            .unwrap_or_else(|| Value::String(text.into()))),
        b'+' | b'-' | b'0'..=b'9' => {
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            if let Some(i) = parse_go_int(&plain) {
                return Ok(i);
            }
            if is_yaml_float(&plain)
                && let Some(f) = parse_go_float(&plain)
            {
                return Ok(float_value(f));
            }
            if let Some(bits) = plain.strip_prefix("0b") {
                if let Ok(i) = i64::from_str_radix(bits, 2) {
                    return Ok(Value::Number(i.into()));
                }
                if let Ok(u) = u64::from_str_radix(bits, 2) {
                    return Ok(Value::Number(u.into()));
                }
            } else if let Some(bits) = plain.strip_prefix("-0b")
                && let Ok(i) = i64::from_str_radix(&format!("-{bits}"), 2)
            {
                return Ok(Value::Number(i.into()));
            }
            Ok(Value::String(text.into()))
        }
        _ => Ok(Value::String(text.into())),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`: a sign, then `0x`, `0o`,
/// `0b` or a leading `0` (octal) choose the base.
fn parse_go_int(s: &str) -> Option<Value> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, d)
    } else if let Some(d) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, d)
    } else if let Some(d) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        let v = i128::try_from(mag).ok().map(|m| -m)?;
        i64::try_from(v).ok().map(|i| Value::Number(i.into()))
    } else if let Ok(i) = i64::try_from(mag) {
        Some(Value::Number(i.into()))
    } else {
        u64::try_from(mag).ok().map(|u| Value::Number(u.into()))
    }
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` on the forms YAML lets through (no hex floats, no
/// `inf`/`nan` words: those are not plain numbers to go-yaml).
fn parse_go_float(s: &str) -> Option<f64> {
    let ok = s
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A float as encoding/json prints it: integral values in range as integers.
fn float_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        if f.abs() < 9.2e18 {
            return Value::Number((f as i64).into());
        }
        if (0.0..1.8e19).contains(&f) {
            return Value::Number((f as u64).into());
        }
    }
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn j(text: &str) -> Value {
        to_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn scalars_resolve_as_yaml_1_1() {
        let v = j(
            "a: yes\nb: No\nc: on\nd: 0644\ne: 0x1F\nf: 1_000\ng: ~\nh: 0.5\ni: 1e3\nj: '0644'\nk: \"yes\"\nl: 08\nm: -0b11\nts: 2020-01-02\no: +12\np: 1.0\nq: |\n  yes\n",
        );
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": true, "d": 420, "e": 31, "f": 1000, "g": null,
                   "h": 0.5, "i": 1000, "j": "0644", "k": "yes", "l": 8, "m": -3,
                   "ts": "2020-01-02", "o": 12, "p": 1, "q": "yes\n"})
        );
    }

    #[test]
    fn keys_become_strings_and_merges_apply() {
        let v =
            j("base: &b {x: 1, z: 2}\nd:\n  <<: *b\n  z: 3\n1: one\ntrue: t\nlist: [*b]\ny: yes\n");
        assert_eq!(v["d"], json!({"x": 1, "z": 3}));
        // YAML 1.1: the key `y` is the boolean true, as upstream reads it.
        assert_eq!(v["true"], true);
        assert_eq!(v["1"], "one");
        assert_eq!(v["list"], json!([{"x": 1, "z": 2}]));
    }

    #[test]
    fn hostile_documents_are_refused_not_crashed_on() {
        let deep = "- ".repeat(MAX_DEPTH + 10) + "x\n";
        assert!(to_json(&deep).is_err());
        // A billion laughs: every level doubles the nodes.
        let mut laughs = String::from("a: &a [x, x]\n");
        for i in 0..30 {
            laughs.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}]\n",
                prev = if i == 0 {
                    "a".to_string()
                } else {
                    format!("b{}", i - 1)
                }
            ));
        }
        assert_eq!(
            to_json(&laughs),
            Err(YamlError::Value(
                "document contains excessive aliasing".into()
            ))
        );
        // Merges: earlier maps win, a quoted << is a key, a merge of a scalar is an error.
        let v = j("a: &a {k: 1}\nb: &b {k: 2}\nm:\n  <<: [*a, *b]\nq: {'<<': 3}\n");
        assert_eq!(v["m"]["k"], 1);
        assert_eq!(v["q"]["<<"], 3);
        assert!(to_json("m:\n  <<: [1]\n").is_err());
        assert_eq!(j("a: !!float 1\n")["a"], 1);
        assert!(to_json("a: !!int 1.0\n").is_err());
    }

    #[test]
    fn only_the_first_document_counts_and_errors_are_errors() {
        assert_eq!(j("a: 1\n---\nb: 2\n"), json!({"a": 1}));
        assert!(to_json("a: [1\n").is_err());
        assert!(to_json("a: .nan\n").is_err());
        assert!(to_json("? [a]\n: b\n").is_err());
        assert_eq!(j(""), Value::Null);
        assert!(to_json("a: !!int x\n").is_err());
        assert_eq!(j("a: !!str 12\n"), json!({"a": "12"}));
    }

    #[test]
    fn emitted_yaml_reads_back_the_same() {
        let v = json!({"kind": "Config", "n": "yes", "mode": "0644", "port": 6443,
                       "list": [{"name": "a", "on": true}], "empty": ""});
        let text = to_string(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j(&text), v, "{text}");
    }
}
