//! Upstream's static pod UID, bit for bit: the MD5 of go-spew's `%#v` print of the decoded,
//! defaulted pod converted to the internal `core.Pod` type (upstream `applyDefaults` and
//! `hash.DeepHashObject`). The print depends on Go's type layout, so the shape of `core.Pod`
//! 1.20.2 is data (`core_pod_types.json`, written by `scripts/static-uid-oracle.sh schema`),
//! and the printer walks it as spew's `formatState` walks reflected values.
//!
//! What spew would print from Go's private state is rebuilt here: a `resource.Quantity`'s
//! parsed form (`i`, `d`, `s`, `Format`), an `IntOrString`'s three fields, a zero
//! `metav1.Time`. A manifest this cannot print exactly (a set timestamp, a quantity that
//! needs `inf.Dec`, raw managed fields) gets `Unsupported`, and the caller falls back.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

/// Why a pod cannot be printed as upstream does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

#[derive(serde::Deserialize)]
struct Schema {
    root: String,
    types: HashMap<String, TypeDef>,
}

#[derive(serde::Deserialize)]
struct TypeDef {
    k: String,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    f: Vec<Field>,
}

#[derive(serde::Deserialize)]
struct Field {
    n: String,
    #[serde(default)]
    j: String,
    t: String,
    #[serde(default)]
    i: bool,
}

fn schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| serde_json::from_str(include_str!("core_pod_types.json")).ok())
        .as_ref()
}

/// The UID upstream 1.20 gives a static pod whose decoded and v1-defaulted form is `pod`.
pub fn upstream_uid(pod: &k8s_openapi::api::core::v1::Pod) -> Result<String, Unsupported> {
    use md5::Digest;
    let printed = spew_internal_pod(pod)?;
    let digest = md5::Md5::digest(printed.as_bytes());
    Ok(digest.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// go-spew's `%#v` of the `*core.Pod` that upstream's decoder makes of `pod`.
pub fn spew_internal_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Result<String, Unsupported> {
    let schema = schema().ok_or_else(|| Unsupported("core_pod_types.json is unreadable".into()))?;
    let v = serde_json::to_value(pod).map_err(|e| Unsupported(e.to_string()))?;
    let v = to_internal(v);
    let mut p = Printer {
        schema,
        out: String::with_capacity(4096),
        ignore_next_type: false,
    };
    p.format(&schema.root, Some(&v))?;
    Ok(p.out)
}

const INIT_CONTAINER_ANNOTATIONS: [&str; 4] = [
    "pod.beta.kubernetes.io/init-containers",
    "pod.alpha.kubernetes.io/init-containers",
    "pod.beta.kubernetes.io/init-container-statuses",
    "pod.alpha.kubernetes.io/init-container-statuses",
];

/// The v1 JSON reshaped as upstream's v1 → internal conversion does, with the resource
/// lists that v1 defaulting rounds to milli-units replaced by their rounded parsed form.
fn to_internal(mut v: Value) -> Value {
    let Some(pod) = v.as_object_mut() else {
        return v;
    };
    // The decoder clears TypeMeta on internal objects.
    pod.remove("apiVersion");
    pod.remove("kind");
    if let Some(ann) = pod
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        for k in INIT_CONTAINER_ANNOTATIONS {
            ann.remove(k);
        }
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let sa_empty = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if sa_empty && let Some(old) = spec.get("serviceAccount").cloned() {
            spec.insert("serviceAccountName".into(), old);
        }
        let mut host = Map::new();
        for k in ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] {
            if let Some(x) = spec.get(k) {
                host.insert(k.into(), x.clone());
            }
        }
        let sc = spec
            .entry("securityContext")
            .or_insert_with(|| Value::Object(Map::new()));
        if !sc.is_object() {
            *sc = Value::Object(Map::new());
        }
        if let Some(sc) = sc.as_object_mut() {
            sc.extend(host);
        }
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) {
                    for k in ["limits", "requests"] {
                        round_list(r.get_mut(k));
                    }
                }
            }
        }
        round_list(spec.get_mut("overhead"));
        for vol in spec
            .get_mut("volumes")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(r) = vol
                .pointer_mut("/ephemeral/volumeClaimTemplate/spec/resources")
                .and_then(Value::as_object_mut)
            {
                for k in ["limits", "requests"] {
                    round_list(r.get_mut(k));
                }
            }
        }
    }
    if let Some(st) = pod.get_mut("status").and_then(Value::as_object_mut) {
        let ip = st
            .get("podIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let first = st
            .get("podIPs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|p| p.get("ip"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let none = st
            .get("podIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !ip.is_empty() && (none || first.as_deref() != Some(ip.as_str())) {
            st.insert("podIPs".into(), serde_json::json!([{ "ip": ip }]));
        }
    }
    v
}

/// `SetDefaults_ResourceList`: every quantity rounded up to milli-units.
fn round_list(list: Option<&mut Value>) {
    let Some(list) = list.and_then(Value::as_object_mut) else {
        return;
    };
    for q in list.values_mut() {
        if let Some(s) = quantity_text(q)
            && let Ok(mut parsed) = Quantity::parse(&s)
        {
            parsed.round_up(-3);
            *q = parsed.to_value();
        }
    }
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `resource.Quantity`'s private state after `ParseQuantity` (the `int64Amount` fast path).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quantity {
    value: i64,
    scale: i32,
    s: String,
    format: &'static str,
    /// The `inf.Dec` form (unscaled, scale) when the fast path did not apply.
    dec: Option<(i128, i32)>,
}

impl Quantity {
    fn parse(text: &str) -> Result<Self, Unsupported> {
        let bad = || Unsupported(format!("quantity {text:?}"));
        if text.is_empty() {
            return Err(bad());
        }
        if text == "0" {
            return Ok(Self {
                value: 0,
                scale: 0,
                s: "0".into(),
                format: "DecimalSI",
                dec: None,
            });
        }
        let (positive, num, denom, suffix) = split_quantity(text).ok_or_else(bad)?;
        let (base, exponent, format) = interpret_suffix(suffix).ok_or_else(bad)?;
        let mut scale: i32;
        let mut mantissa: i64 = 1;
        let precision: i32;
        match format {
            "BinarySI" => {
                scale = 0;
                if exponent >= 0 && denom.is_empty() {
                    mantissa = 1i64.checked_shl(exponent as u32).ok_or_else(bad)?;
                    precision = 15 - num.len() as i32 - ((exponent as f32) * 3.0 / 10.0) as i32 - 1;
                } else {
                    precision = -1;
                }
            }
            _ => {
                scale = exponent;
                precision = 18 - (num.len() + denom.len()) as i32;
            }
        }
        if precision >= 0 {
            scale = scale
                .checked_sub(i32::try_from(denom.len()).map_err(|_| bad())?)
                .ok_or_else(bad)?;
            if scale >= -9 {
                let shifted = format!("{num}{denom}");
                let value: i64 = shifted.parse().map_err(|_| bad())?;
                if let Some(mut result) = value.checked_mul(mantissa) {
                    if !positive {
                        result = -result;
                    }
                    let canonical = match format {
                        "BinarySI" => exponent % 10 == 0 && (value & 0x07) != 0,
                        _ => {
                            scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
                        }
                    };
                    return Ok(Self {
                        value: result,
                        scale,
                        s: if canonical {
                            text.into()
                        } else {
                            String::new()
                        },
                        format,
                        dec: None,
                    });
                }
            }
        }
        // The inf.Dec slow path, in i128 (past that: unsupported).
        let digits = format!("{num}{denom}");
        let mut unscaled: i128 = digits.parse().map_err(|_| bad())?;
        let mut dscale = i32::try_from(denom.len()).map_err(|_| bad())?;
        if base == 10 {
            dscale = dscale.checked_sub(exponent).ok_or_else(bad)?;
        } else {
            let factor = 1i128.checked_shl(exponent as u32).ok_or_else(bad)?;
            unscaled = unscaled.checked_mul(factor).ok_or_else(bad)?;
        }
        if unscaled == 0 {
            return Err(bad());
        }
        let (mut unscaled, mut dscale) = round_dec(unscaled, dscale, 9).ok_or_else(bad)?;
        let mut format = format;
        if format == "BinarySI" {
            // Capped at the largest int64, as upstream's maxAllowed.
            let max = i128::from(i64::MAX) * 10i128.pow(dscale.max(0) as u32);
            if dscale >= 0 && unscaled > max {
                (unscaled, dscale) = (i128::from(i64::MAX), 0);
            }
            if dscale >= 0 && unscaled < 10i128.pow(dscale as u32) {
                format = "DecimalSI";
            }
        }
        if !positive {
            unscaled = -unscaled;
        }
        Ok(Self {
            value: 0,
            scale: 0,
            s: String::new(),
            format,
            dec: Some((unscaled, dscale)),
        })
    }

    /// `Quantity.RoundUp` on the `int64Amount` form.
    fn round_up(&mut self, scale: i32) {
        if let Some((u, sc)) = self.dec {
            self.s.clear();
            // Go keeps the old value when the rounding overflows i128: never here in practice.
            if let Some(d) = round_dec(u, sc, -scale) {
                self.dec = Some(d);
            }
            return;
        }
        if self.scale >= scale {
            return;
        }
        self.s.clear();
        self.value = negative_scale(self.value, scale - self.scale);
        self.scale = scale;
    }

    /// The private fields as the printer reads them (Go field names).
    fn to_value(&self) -> Value {
        if let Some((u, scale)) = self.dec {
            // big.Int's magnitude is little-endian 64-bit words, without leading zeros.
            let abs = u.unsigned_abs();
            let (lo, hi) = (abs as u64, (abs >> 64) as u64);
            let words = if hi == 0 { vec![lo] } else { vec![lo, hi] };
            return serde_json::json!({
                "i": { "value": 0, "scale": 0 },
                "d": { "Dec": { "unscaled": { "neg": u < 0, "abs": words }, "scale": scale } },
                "s": self.s,
                "Format": self.format,
            });
        }
        serde_json::json!({
            "i": { "value": self.value, "scale": self.scale },
            "d": { "Dec": null },
            "s": self.s,
            "Format": self.format,
        })
    }
}

/// `inf.Dec.Round(x, to, RoundUp)`: the same value at scale `to`, rounded away from zero.
fn round_dec(unscaled: i128, scale: i32, to: i32) -> Option<(i128, i32)> {
    if scale <= to {
        let f = 10i128.checked_pow((to - scale) as u32)?;
        return Some((unscaled.checked_mul(f)?, to));
    }
    let f = 10i128.checked_pow((scale - to) as u32)?;
    let (q, r) = (unscaled / f, unscaled % f);
    let q = match r.signum() {
        0 => q,
        1 => q + 1,
        _ => q - 1,
    };
    Some((q, to))
}

/// `negativeScaleInt64`: divide by 10^scale, rounding away from zero.
fn negative_scale(base: i64, scale: i32) -> i64 {
    let mut value = base;
    let mut fraction = false;
    for _ in 0..scale {
        if !fraction && value % 10 != 0 {
            fraction = true;
        }
        value /= 10;
        if value == 0 {
            return match (fraction, base > 0) {
                (false, _) => 0,
                (true, true) => 1,
                (true, false) => -1,
            };
        }
    }
    if fraction {
        if base > 0 {
            value += 1;
        } else {
            value -= 1;
        }
    }
    value
}

/// `parseQuantityString`: sign, numerator (leading zeros stripped), denominator, suffix.
fn split_quantity(s: &str) -> Option<(bool, String, String, &str)> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Some((positive, "0".into(), String::new(), ""));
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let mut num = s[start..pos].to_string();
    if pos >= end {
        return Some((positive, num, String::new(), ""));
    }
    if num.is_empty() {
        num = "0".into();
    }
    let mut denom = String::new();
    if b[pos] == b'.' {
        pos += 1;
        let ds = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = s[ds..pos].to_string();
        if pos >= end {
            return Some((positive, num, denom, ""));
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos >= end {
        return Some((positive, num, denom, &s[suffix_start..]));
    }
    if b[pos] == b'-' || b[pos] == b'+' {
        pos += 1;
    }
    while pos < end {
        if !b[pos].is_ascii_digit() {
            return None;
        }
        pos += 1;
    }
    Some((positive, num, denom, &s[suffix_start..]))
}

/// `quantitySuffixer.interpret`: (base, exponent, format).
fn interpret_suffix(s: &str) -> Option<(u32, i32, &'static str)> {
    let dec = |e| Some((10, e, "DecimalSI"));
    let bin = |e| Some((2, e, "BinarySI"));
    match s {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        _ => {
            let rest = s.strip_prefix(['e', 'E'])?;
            let e: i32 = rest.parse().ok()?;
            (!rest.is_empty()).then_some((10, e, "DecimalExponent"))
        }
    }
}

/// A port of go-spew's `formatState.format` for `%#v` (types shown, no pointer addresses),
/// with `SortKeys` and `DisableMethods`, over JSON values typed by the schema.
struct Printer {
    schema: &'static Schema,
    out: String,
    ignore_next_type: bool,
}

impl Printer {
    fn def(&self, ty: &str) -> Result<&'static TypeDef, Unsupported> {
        let schema: &'static Schema = self.schema;
        schema
            .types
            .get(ty)
            .ok_or_else(|| Unsupported(format!("type {ty} not in the schema")))
    }

    fn format(&mut self, ty: &str, v: Option<&Value>) -> Result<(), Unsupported> {
        let v = v.filter(|v| !v.is_null());
        let def = self.def(ty)?;
        if def.k == "ptr" {
            return self.format_ptr(ty, def.e.as_deref().unwrap_or_default(), v);
        }
        let converted;
        let v = match (ty, v) {
            ("resource.Quantity", Some(q @ (Value::String(_) | Value::Number(_)))) => {
                let text = quantity_text(q).unwrap_or_default();
                converted = Quantity::parse(&text)?.to_value();
                Some(&converted)
            }
            ("intstr.IntOrString", Some(Value::Number(n))) => {
                converted = serde_json::json!({ "type": 0, "intVal": n, "strVal": "" });
                Some(&converted)
            }
            ("intstr.IntOrString", Some(Value::String(s))) => {
                converted = serde_json::json!({ "type": 1, "intVal": 0, "strVal": s });
                Some(&converted)
            }
            ("v1.Time", Some(t)) => return Err(Unsupported(format!("timestamp {t}"))),
            ("v1.FieldsV1", Some(_)) => return Err(Unsupported("managed fields".into())),
            _ => v,
        };
        if !self.ignore_next_type {
            self.out.push('(');
            self.out.push_str(ty);
            self.out.push(')');
        }
        self.ignore_next_type = false;
        let kind = def.k.as_str();
        match kind {
            "bool" => {
                let b = match v {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(x) => return Err(Unsupported(format!("{ty}: {x}"))),
                };
                self.out.push_str(if b { "true" } else { "false" });
            }
            "int" | "int8" | "int16" | "int32" | "int64" => {
                let n = match v {
                    None => 0,
                    Some(x) => x
                        .as_i64()
                        .ok_or_else(|| Unsupported(format!("{ty}: {x}")))?,
                };
                let _ = write!(self.out, "{n}");
            }
            "uint" | "uint8" | "uint16" | "uint32" | "uint64" => {
                let n = match v {
                    None => 0,
                    Some(x) => x
                        .as_u64()
                        .ok_or_else(|| Unsupported(format!("{ty}: {x}")))?,
                };
                let _ = write!(self.out, "{n}");
            }
            "string" => match v {
                None => {}
                Some(Value::String(s)) => self.out.push_str(s),
                Some(x) => return Err(Unsupported(format!("{ty}: {x}"))),
            },
            "slice" => match v {
                None => self.out.push_str("<nil>"),
                Some(Value::Array(items)) => {
                    let elem = def.e.as_deref().unwrap_or_default();
                    self.out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            self.out.push(' ');
                        }
                        self.ignore_next_type = true;
                        self.format(elem, Some(item))?;
                    }
                    self.out.push(']');
                }
                Some(x) => return Err(Unsupported(format!("{ty}: {x}"))),
            },
            "map" => match v {
                None => self.out.push_str("<nil>"),
                Some(Value::Object(m)) => {
                    let elem = def.e.as_deref().unwrap_or_default();
                    self.out.push_str("map[");
                    // serde_json's map is ordered by key bytes, as spew's SortKeys.
                    for (i, (k, item)) in m.iter().enumerate() {
                        if i > 0 {
                            self.out.push(' ');
                        }
                        self.out.push_str(k);
                        self.out.push(':');
                        self.ignore_next_type = true;
                        self.format(elem, Some(item))?;
                    }
                    self.out.push(']');
                }
                Some(x) => return Err(Unsupported(format!("{ty}: {x}"))),
            },
            "struct" => {
                let obj = match v {
                    None => None,
                    Some(Value::Object(m)) => Some(m),
                    Some(x) => return Err(Unsupported(format!("{ty}: {x}"))),
                };
                self.out.push('{');
                for (
                    i,
                    Field {
                        n: name,
                        j: json,
                        t: fty,
                        i: inline,
                    },
                ) in def.f.iter().enumerate()
                {
                    if i > 0 {
                        self.out.push(' ');
                    }
                    self.out.push_str(name);
                    self.out.push(':');
                    let is_struct = self.def(fty)?.k == "struct";
                    let fv = if *inline && is_struct {
                        v
                    } else {
                        let key = if json.is_empty() { name } else { json };
                        obj.and_then(|m| m.get(key.as_str()))
                    };
                    self.format(fty, fv)?;
                }
                self.out.push('}');
            }
            other => return Err(Unsupported(format!("{ty}: kind {other}"))),
        }
        Ok(())
    }

    /// spew's `formatPtr`: `(*T)` and the pointee, `(*T)<nil>`, or inside a slice or map
    /// `<*>` and `<nil>`.
    fn format_ptr(&mut self, ty: &str, elem: &str, v: Option<&Value>) -> Result<(), Unsupported> {
        let Some(v) = v else {
            if self.ignore_next_type {
                // spew leaves ignoreNextType set here.
                self.out.push_str("<nil>");
            } else {
                self.out.push('(');
                self.out.push_str(ty);
                self.out.push_str(")<nil>");
            }
            return Ok(());
        };
        if self.def(elem)?.k == "ptr" {
            return Err(Unsupported(format!("{ty}: pointer to pointer")));
        }
        if self.ignore_next_type {
            self.out.push_str("<*>");
        } else {
            self.out.push_str("(*");
            self.out.push_str(elem);
            self.out.push(')');
        }
        self.ignore_next_type = true;
        self.format(elem, Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_upstreams_private_form() {
        let q = |s: &str| Quantity::parse(s).map(|q| (q.value, q.scale, q.s, q.format));
        assert_eq!(q("100m"), Ok((100, -3, "100m".into(), "DecimalSI")));
        assert_eq!(q("1Gi"), Ok((1 << 30, 0, "1Gi".into(), "BinarySI")));
        assert_eq!(q("8Gi"), Ok((8 << 30, 0, String::new(), "BinarySI")));
        assert_eq!(q("0"), Ok((0, 0, "0".into(), "DecimalSI")));
        assert_eq!(q("0.5"), Ok((5, -1, String::new(), "DecimalSI")));
        assert_eq!(q("1000"), Ok((1000, 0, String::new(), "DecimalSI")));
        assert_eq!(q("1e3"), Ok((1, 3, "1e3".into(), "DecimalExponent")));
        assert_eq!(q("1.5Ki"), Ok((0, 0, String::new(), "BinarySI")));
        assert!(q("x").is_err());
        assert!(
            q("1.5e-2147483648").is_err(),
            "no overflow on extreme exponents"
        );
        let mut n = Quantity::parse("1n").unwrap_or_else(|e| panic!("{e:?}"));
        n.round_up(-3);
        assert_eq!((n.value, n.scale, n.s.as_str()), (1, -3, ""));
    }

    #[test]
    fn the_schema_is_readable_and_closed() {
        let s = schema().unwrap_or_else(|| panic!("schema"));
        for (name, t) in &s.types {
            for f in &t.f {
                assert!(s.types.contains_key(&f.t), "{name}.{} → {}", f.n, f.t);
            }
            if let Some(e) = &t.e {
                assert!(s.types.contains_key(e), "{name} → {e}");
            }
        }
        assert_eq!(s.root, "*core.Pod");
    }
}
