//! OpenMetrics 1.0.0 text for `/metrics` when the scraper asks for it
//! (`Accept: application/openmetrics-text`), derived from the 0.0.4 text that
//! [`super::metrics`] and the controller render.
//!
//! For the families jvmwatch exports the formats differ only in:
//! - a counter's family is named without `_total` (`# TYPE jvm_gc_collections counter`); its
//!   samples keep `_total` (`jvm_gc_collections_total{...} 3`);
//! - `# HELP` text escapes `"` too;
//! - the exposition ends with `# EOF`;
//! - names must be unique across families *and* their samples. A counter whose family name
//!   would be taken (`jvm_classes_loaded_total`, the in-VM monitor's counter, beside the gauge
//!   `jvm_classes_loaded`) is written as an `unknown` family of its full name, so its series is
//!   the same in both formats; any other family whose names clash with an earlier one is left
//!   out, as the 0.0.4 renderer leaves out clashes of its own.
//!
//! The input is our own renderers' output: `# HELP` then `# TYPE` then the samples, per family.

use std::collections::HashSet;

/// Content type of the OpenMetrics exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format (the default).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when an `Accept` header prefers OpenMetrics to the text format: the best quality
/// (`q=`) among `application/openmetrics-text` ranges (without a version, or version 1.0.0 or
/// 0.0.1) is above 0 and at least that of `text/plain` (and of `*/*`, which the text format
/// answers too).
pub fn wanted(accept: &str) -> bool {
    let (mut om, mut text) = (0.0f64, 0.0f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let (mut q, mut version) = (1.0f64, None);
        for p in parts {
            let Some((k, v)) = p.split_once('=') else { continue };
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "version" => version = Some(v.trim().to_string()),
                _ => {}
            }
        }
        match media.as_str() {
            "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0" || v == "0.0.1") => {
                om = om.max(q)
            }
            "text/plain" | "*/*" | "text/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

/// Escapes `"` in 0.0.4 HELP text (which escapes only `\` and newline already).
fn help_text(h: &str) -> String {
    let mut o = String::with_capacity(h.len());
    let mut chars = h.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                o.push('\\');
                if let Some(n) = chars.next() {
                    o.push(n);
                }
            }
            '"' => o.push_str("\\\""),
            c => o.push(c),
        }
    }
    o
}

/// The sample names a family of `kind` named `family` (OpenMetrics naming) owns.
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{family}_total"), format!("{family}_created")],
        "summary" | "histogram" => vec![
            family.to_string(),
            format!("{family}_sum"),
            format!("{family}_count"),
            format!("{family}_created"),
            format!("{family}_bucket"),
        ],
        _ => vec![family.to_string()],
    }
}

/// Converts 0.0.4 text (our renderers' shape) into OpenMetrics 1.0.0.
pub fn from_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut claimed: HashSet<String> = HashSet::new();
    let mut help: Option<(&str, &str)> = None;
    // Whether the samples after the current `# TYPE` are written.
    let mut keep = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            keep = false;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let kind = if kind == "untyped" { "unknown" } else { kind };
            let mut family = if kind == "counter" { name.strip_suffix("_total").unwrap_or(name) } else { name };
            let mut kind = kind;
            let clashes = |family: &str, kind: &str| {
                let mut names = sample_names(family, kind);
                names.push(family.to_string());
                names.iter().any(|n| claimed.contains(n)).then_some(()).map_or(Ok(names), Err)
            };
            let mut names = clashes(family, kind);
            if names.is_err() && kind == "counter" {
                // `jvm_classes_loaded_total` (counter) beside `jvm_classes_loaded` (gauge):
                // the counter keeps its series as an `unknown` family of its full name.
                (family, kind) = (name, "unknown");
                names = clashes(family, kind);
            }
            keep = names.is_ok();
            if let Ok(names) = names {
                claimed.extend(names);
                if let Some((_, text)) = help.filter(|(h, _)| *h == name) {
                    out.push_str(&format!("# HELP {family} {}\n", help_text(text)));
                }
                out.push_str(&format!("# TYPE {family} {kind}\n"));
            }
            help = None;
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        // What Prometheus sends when it may scrape OpenMetrics.
        assert!(wanted(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
             text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(wanted("application/openmetrics-text"));
        assert!(wanted("Application/OpenMetrics-Text; version=1.0.0; charset=utf-8"));
        assert!(!wanted(""));
        assert!(!wanted("*/*"));
        assert!(!wanted("text/plain;version=0.0.4"));
        assert!(!wanted("text/plain, application/openmetrics-text;q=0.5"));
        assert!(!wanted("application/openmetrics-text;q=0"));
        assert!(!wanted("application/openmetrics-text;version=2.0.0"));
    }

    #[test]
    fn counters_lose_total_in_the_family_name_and_eof_ends_it() {
        let text = "# HELP a_total Things \"counted\" \\\\ here.\n# TYPE a_total counter\na_total{jvm=\"x\"} 3\n\
                    # HELP g A gauge.\n# TYPE g gauge\ng 1\n\
                    # HELP s A summary.\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 2\n";
        let om = from_text(text);
        assert_eq!(
            om,
            "# HELP a Things \\\"counted\\\" \\\\ here.\n# TYPE a counter\na_total{jvm=\"x\"} 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1\n\
             # HELP s A summary.\n# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 2\n# EOF\n"
        );
    }

    #[test]
    fn clashing_families_are_left_out() {
        let text = "# HELP app_x_total c\n# TYPE app_x_total counter\napp_x_total 1\n\
                    # HELP app_x g\n# TYPE app_x gauge\napp_x 5\n\
                    # HELP app_y g\n# TYPE app_y gauge\napp_y 5\n";
        let om = from_text(text);
        assert!(om.contains("# TYPE app_x counter\napp_x_total 1\n"), "{om}");
        assert!(!om.contains("app_x 5"), "{om}");
        assert!(om.contains("app_y 5\n# EOF\n"), "{om}");
        let text = "# HELP c c\n# TYPE c gauge\nc 1\n# HELP c_total c\n# TYPE c_total counter\nc_total 2\n";
        let om = from_text(text);
        assert!(om.contains("# TYPE c gauge\nc 1\n# HELP c_total c\n# TYPE c_total unknown\nc_total 2\n"), "{om}");
    }
}
