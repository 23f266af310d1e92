//! Logs as upstream's kubelet writes them, so `journalctl -u kubelet | grep` and log shippers
//! keep working: klog's text lines (`I1201 15:04:05.000000   1234 file.rs:42] "msg" k="v"`),
//! or, with `logging.format: json` / `--logging-format=json`, upstream's JSON lines
//! (`{"ts":…,"v":0,"msg":"…",…}`). `-v` maps onto tracing's levels as klog's verbosity does
//! (0–1 info, 2–4 debug, 5+ trace) for the kubelet's own crates, other crates log warnings;
//! `--vmodule=pattern=N,…` raises the level of the source files whose name matches, as
//! klog's does. `KUBELET_LOG`, a tracing `EnvFilter` directive, overrides both (for debugging
//! kubelet-rs itself).

use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The log targets `-v` sets the level of (the kubelet's own decisions and actions); every
/// other target logs warnings.
const OUR_CRATES: &[&str] = &[
    "kubelet",
    "kubelet_pod",
    "kubelet_api",
    "kubelet_server",
    "kubelet_volume",
    "kubelet_host",
    "kubelet_cri",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub verbosity: i32,
    /// `--vmodule`: (glob over the source file's name without `.rs`, verbosity).
    pub vmodule: Vec<(String, i32)>,
    pub format: Format,
}

/// klog's verbosity as a tracing level.
pub fn level_for(v: i32) -> Level {
    match v {
        i32::MIN..=1 => Level::INFO,
        2..=4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Parses `--vmodule` (`pattern=N,...`); the flag parser has checked the syntax.
pub fn parse_vmodule(spec: &str) -> Vec<(String, i32)> {
    spec.split(',')
        .filter_map(|p| {
            let (pat, n) = p.trim().split_once('=')?;
            Some((
                pat.trim_end_matches(".go").to_string(),
                n.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// klog's `filepath.Match` subset: `*` and `?`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], name) || (!name.is_empty() && glob(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn file_stem<'a>(meta: &Metadata<'a>) -> &'a str {
    let file = meta.file().unwrap_or("");
    let base = file.rsplit('/').next().unwrap_or(file);
    base.strip_suffix(".rs").unwrap_or(base)
}

/// Whether `meta` is logged under `opts` (when `KUBELET_LOG` is not set).
pub fn enabled(opts: &Options, meta: &Metadata<'_>) -> bool {
    let ours = OUR_CRATES.contains(&meta.target().split("::").next().unwrap_or(""));
    let mut max = if ours {
        level_for(opts.verbosity)
    } else {
        Level::WARN
    };
    if !opts.vmodule.is_empty() {
        // klog: the first pattern that matches the file's name (without its extension) sets
        // the level, higher or lower than -v.
        let stem = file_stem(meta);
        if let Some((_, v)) = opts
            .vmodule
            .iter()
            .find(|(pat, _)| glob(pat.as_bytes(), stem.as_bytes()))
        {
            max = level_for(*v);
        }
    }
    *meta.level() <= max
}

/// Installs the global subscriber.
pub fn init(opts: Options) {
    use tracing_subscriber::prelude::*;
    let pid = std::process::id();
    let tz = jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC);
    // Upstream's JSON logger writes to stdout, klog to stderr.
    let json = opts.format == Format::Json;
    let writer =
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if json {
                Box::new(std::io::stdout())
            } else {
                Box::new(std::io::stderr())
            }
        });
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .fmt_fields(KlogFields {
            json: opts.format == Format::Json,
        })
        .event_format(Lines {
            pid,
            tz,
            format: opts.format,
        });
    match tracing_subscriber::EnvFilter::try_from_env("KUBELET_LOG") {
        Ok(filter) => {
            let _ = tracing_subscriber::registry()
                .with(fmt_layer.with_filter(filter))
                .try_init();
        }
        Err(_) => {
            let filter = tracing_subscriber::filter::filter_fn(move |m| enabled(&opts, m));
            let _ = tracing_subscriber::registry()
                .with(fmt_layer.with_filter(filter))
                .try_init();
        }
    }
}

/// Go's `strconv.Quote`, closely enough: Rust's escapes for the rest.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// One event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    /// (key, value as it is written: quoted or bare), in order.
    pairs: Vec<(String, Value)>,
}

enum Value {
    Str(String),
    Raw(String),
}

impl Value {
    fn text(&self) -> &str {
        match self {
            Value::Str(s) | Value::Raw(s) => s,
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((key(field), Value::Str(value.to_string())));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pairs.push((key(field), Value::Raw(value.to_string())));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pairs.push((key(field), Value::Raw(value.to_string())));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pairs.push((key(field), Value::Raw(value.to_string())));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pairs.push((key(field), Value::Raw(value.to_string())));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((key(field), Value::Str(format!("{value:?}"))));
        }
    }
}

/// klog says `err` where our code says `error`.
fn key(field: &Field) -> String {
    match field.name() {
        "error" => "err".into(),
        n => n.to_string(),
    }
}

impl Fields {
    fn write_text(&self, out: &mut String) {
        for (k, v) in &self.pairs {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            match v {
                Value::Str(s) => out.push_str(&quote(s)),
                Value::Raw(s) => out.push_str(s),
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        for (k, v) in &self.pairs {
            out.push(',');
            out.push_str(&serde_json::Value::String(k.clone()).to_string());
            out.push(':');
            match v {
                Value::Str(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
                Value::Raw(s)
                    if s.parse::<f64>().is_ok_and(f64::is_finite)
                        || s == "true"
                        || s == "false" =>
                {
                    out.push_str(s)
                }
                Value::Raw(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            }
        }
    }
}

/// Span fields (pod, uid, container), stored formatted on the span: ` k="v"` or `,"k":"v"`.
struct KlogFields {
    json: bool,
}

impl<'w> FormatFields<'w> for KlogFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut f = Fields::default();
        fields.record(&mut f);
        if !f.message.is_empty() {
            f.pairs
                .insert(0, ("message".into(), Value::Str(f.message.clone())));
        }
        let mut out = String::new();
        if self.json {
            f.write_json(&mut out);
        } else {
            f.write_text(&mut out);
        }
        writer.write_str(&out)
    }
}

struct Lines {
    pid: u32,
    tz: jiff::tz::TimeZone,
    format: Format,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        // The spans' fields, outermost first.
        let mut spans = String::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(ff) = span.extensions().get::<FormattedFields<N>>() {
                    spans.push_str(ff.as_str());
                }
            }
        }
        #[allow(clippy::disallowed_methods)] // a log line's own wall-clock time
        let now = jiff::Timestamp::now();
        let mut out = String::with_capacity(160);
        match self.format {
            Format::Text => {
                let z = now.to_zoned(self.tz.clone());
                let sev = match *meta.level() {
                    Level::ERROR => 'E',
                    Level::WARN => 'W',
                    _ => 'I',
                };
                let file = meta.file().unwrap_or("?");
                let file = file.rsplit('/').next().unwrap_or(file);
                use std::fmt::Write as _;
                let _ = write!(
                    out,
                    "{sev}{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>7} {file}:{}] ",
                    z.month(),
                    z.day(),
                    z.hour(),
                    z.minute(),
                    z.second(),
                    z.subsec_nanosecond() / 1000,
                    self.pid,
                    meta.line().unwrap_or(0),
                );
                // klog's structured form (InfoS) quotes the message; a bare message is printf's.
                if f.pairs.is_empty() && spans.is_empty() {
                    out.push_str(&f.message);
                } else {
                    out.push_str(&quote(&f.message));
                    f.write_text(&mut out);
                    out.push_str(&spans);
                }
            }
            Format::Json => {
                // component-base's zap encoder: ts (epoch milliseconds), msg, then the fields:
                // v first (also for errors), the rest, err last.
                let ts = now.as_nanosecond() as f64 / 1e6;
                out.push_str(&format!("{{\"ts\":{ts}"));
                out.push_str(",\"msg\":");
                out.push_str(&serde_json::Value::String(f.message.clone()).to_string());
                let v = match *meta.level() {
                    Level::DEBUG => 4,
                    Level::TRACE => 5,
                    _ => 0,
                };
                let err = f
                    .pairs
                    .iter()
                    .position(|(k, _)| k == "err")
                    .map(|i| f.pairs.remove(i));
                let no_fields = f.pairs.is_empty() && spans.is_empty();
                if no_fields && let Some(e) = &err {
                    let mut only = Fields::default();
                    only.pairs
                        .push((e.0.clone(), Value::Str(e.1.text().to_string())));
                    only.write_json(&mut out);
                    out.push_str(&format!(",\"v\":{v}"));
                } else {
                    out.push_str(&format!(",\"v\":{v}"));
                    f.write_json(&mut out);
                    out.push_str(&spans);
                    if let Some(e) = err {
                        let mut only = Fields::default();
                        only.pairs.push(e);
                        only.write_json(&mut out);
                    }
                }
                out.push('}');
            }
        }
        writeln!(w, "{out}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `emit` logs in `format`.
    fn lines(format: Format, emit: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        let w = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || w.clone())
            .fmt_fields(KlogFields {
                json: format == Format::Json,
            })
            .event_format(Lines {
                pid: 4242,
                tz: jiff::tz::TimeZone::UTC,
                format,
            });
        let opts = Options {
            verbosity: 0,
            vmodule: vec![],
            format,
        };
        let sub = tracing_subscriber::registry().with(layer.with_filter(
            tracing_subscriber::filter::filter_fn(move |m| enabled(&opts, m)),
        ));
        tracing::subscriber::with_default(sub, emit);
        let bytes = buf.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn text_lines_are_klogs() {
        let l = lines(Format::Text, || {
            let span = tracing::info_span!("sync", pod = "ns/web", uid = "u1");
            let _g = span.enter();
            tracing::info!(attempt = 2, reason = "Started", "Container started");
            tracing::warn!("plain message");
            tracing::error!(error = "boom", "Sync failed");
            tracing::debug!("not at -v=0");
        });
        assert_eq!(l.len(), 3, "{l:?}");
        let re = regex_lite(&l[0]);
        assert!(re, "{}", l[0]);
        assert!(
            l[0].ends_with(
                "] \"Container started\" attempt=2 reason=\"Started\" pod=\"ns/web\" uid=\"u1\""
            ),
            "{}",
            l[0]
        );
        assert!(
            l[1].starts_with('W') && l[1].contains("] \"plain message\" pod="),
            "{}",
            l[1]
        );
        assert!(
            l[2].starts_with('E') && l[2].contains(" err=\"boom\""),
            "{}",
            l[2]
        );
    }

    /// `I1201 15:04:05.123456    4242 logging.rs:123] ` without a regex crate.
    fn regex_lite(line: &str) -> bool {
        let b = line.as_bytes();
        b.len() > 30
            && b[0] == b'I'
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5] == b' '
            && &line[8..9] == ":"
            && &line[14..15] == "."
            && line[21..].starts_with("    4242 logging.rs:")
    }

    #[test]
    fn a_bare_message_is_not_quoted() {
        let l = lines(Format::Text, || tracing::info!("Starting kubelet"));
        assert!(l[0].ends_with("] Starting kubelet"), "{}", l[0]);
    }

    #[test]
    fn json_lines_are_upstreams_shape() {
        let l = lines(Format::Json, || {
            let span = tracing::info_span!("sync", pod = "ns/web");
            let _g = span.enter();
            tracing::info!(count = 3, "Pods synced");
            tracing::error!(error = "boom", "Sync failed");
        });
        let a: serde_json::Value =
            serde_json::from_str(&l[0]).unwrap_or_else(|e| panic!("{e}: {}", l[0]));
        assert_eq!(a["msg"], "Pods synced");
        assert_eq!(a["v"], 0);
        assert_eq!(a["count"], 3);
        assert_eq!(a["pod"], "ns/web");
        assert!(
            a["ts"].as_f64().is_some_and(|t| t > 1.6e12),
            "milliseconds: {}",
            a["ts"]
        );
        assert!(
            l[0].starts_with("{\"ts\":") && l[0].contains(",\"msg\":\"Pods synced\",\"v\":0,"),
            "{}",
            l[0]
        );
        let b: serde_json::Value =
            serde_json::from_str(&l[1]).unwrap_or_else(|e| panic!("{e}: {}", l[1]));
        assert_eq!(b["err"], "boom");
        assert_eq!(b["v"], 0, "errors carry v too");
        assert!(l[1].ends_with(",\"err\":\"boom\"}"), "err last: {}", l[1]);
    }

    #[test]
    fn vmodule_raises_one_files_level() {
        let opts = Options {
            verbosity: 0,
            vmodule: parse_vmodule("logg*=4"),
            format: Format::Text,
        };
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || w.clone())
                .event_format(Lines {
                    pid: 1,
                    tz: jiff::tz::TimeZone::UTC,
                    format: Format::Text,
                })
                .with_filter(tracing_subscriber::filter::filter_fn(move |m| {
                    enabled(&opts, m)
                })),
        );
        tracing::subscriber::with_default(sub, || tracing::debug!("shown by vmodule"));
        let text = String::from_utf8_lossy(&buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .to_string();
        assert!(text.contains("shown by vmodule"), "{text}");
    }

    #[test]
    fn vmodule_globs_match_file_names() {
        assert_eq!(
            parse_vmodule("pod_workers=4,prob*=5, x.go=2"),
            vec![
                ("pod_workers".into(), 4),
                ("prob*".into(), 5),
                ("x".into(), 2)
            ]
        );
        assert!(glob(b"prob*", b"prober"));
        assert!(glob(b"p?d_workers", b"pod_workers"));
        assert!(!glob(b"prob", b"prober"));
        assert!(glob(b"*", b""));
    }

    #[test]
    fn verbosity_maps_as_klog() {
        assert_eq!(level_for(0), Level::INFO);
        assert_eq!(level_for(2), Level::DEBUG);
        assert_eq!(level_for(4), Level::DEBUG);
        assert_eq!(level_for(6), Level::TRACE);
    }
}
