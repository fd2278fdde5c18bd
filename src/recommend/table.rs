//! The terminal table: one line per container (at most 100 columns), its first reason under it.

use std::io::{self, Write};

use super::{CurrentFrom, Recommendation, Report};
use crate::quantity::format_bytes;
use crate::verdict::human_secs;

/// Width a line is kept to.
pub const WIDTH: usize = 100;

/// Short kind names, as kubectl prints them.
fn short_kind(kind: &str) -> String {
    match kind {
        "Deployment" => "deploy".to_string(),
        "StatefulSet" => "sts".to_string(),
        "DaemonSet" => "ds".to_string(),
        "ReplicaSet" => "rs".to_string(),
        "CronJob" => "cronjob".to_string(),
        "Job" => "job".to_string(),
        "Pod" => "pod".to_string(),
        other => other.to_lowercase(),
    }
}

fn bytes_u(b: Option<u64>) -> String {
    b.map_or("-".to_string(), |b| format_bytes(b as f64))
}

fn bytes_f(b: Option<f64>) -> String {
    b.map_or("-".to_string(), format_bytes)
}

/// Cuts a cell to `width` characters, marking the cut with "…".
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// "leak 2.1 h", "steady", "-".
fn forecast(r: &Recommendation) -> String {
    match (r.pattern, r.time_to_limit_secs) {
        (None, _) => "-".to_string(),
        (Some(p), Some(t)) if t <= 0.0 => format!("{} now", p.as_str()),
        (Some(p), Some(t)) => format!("{} {}", p.as_str(), human_secs(t)),
        (Some(p), None) => p.as_str().to_string(),
    }
}

/// The current request/limit cell: "128Mi/256Mi", "?/256Mi" when the request is unknown.
fn current(r: &Recommendation) -> String {
    let req = match r.current_from {
        CurrentFrom::Runtime => "?".to_string(),
        CurrentFrom::Manifest => bytes_u(r.request),
    };
    format!("{req}/{}", bytes_u(r.limit))
}

fn recommended(r: &Recommendation) -> String {
    match (r.recommended_request, r.recommended_limit) {
        (None, None) => "-".to_string(),
        (req, lim) => format!("{}/{}", bytes_u(req), bytes_u(lim)),
    }
}

pub fn write(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    let multi_ns = report.namespaces.len() > 1;
    if !multi_ns {
        if let Some(ns) = report.namespaces.first() {
            let head = format!("namespace {ns} ({})", report.source);
            writeln!(out, "{}", fit(&head, WIDTH))?;
        }
    }
    // 8 + 27 + 13 + 7 + 7 + 4 + 14 + 7 separators = 87, and at most 13 for "10.5Gi/10.5Gi".
    writeln!(
        out,
        "SEVERITY {:<27} {:>13} {:>7} {:>7} {:>4} {:<14} RECOMMENDED",
        "WORKLOAD/CONTAINER", "REQ/LIMIT", "PEAK", "STAT", "OOMS", "FORECAST",
    )?;
    for r in &report.recommendations {
        let target = if multi_ns {
            format!(
                "{}/{}/{}:{}",
                r.namespace,
                short_kind(&r.kind),
                r.name,
                r.container
            )
        } else {
            format!("{}/{}:{}", short_kind(&r.kind), r.name, r.container)
        };
        let stat = match r.statistic {
            // A kill put the peak above every scrape: the statistic is the scrapes'.
            Some(s) if r.statistic_name != "max" || r.scraped_peak.is_some() => format_bytes(s),
            Some(_) => "=peak".to_string(),
            None => "-".to_string(),
        };
        let line = format!(
            "{:<8} {:<27} {:>13} {:>7} {:>7} {:>4} {:<14} {}",
            r.severity.as_str(),
            fit(&target, 27),
            fit(&current(r), 13),
            bytes_f(r.peak),
            fit(&stat, 7),
            r.oom_kills,
            fit(&forecast(r), 14),
            recommended(r)
        );
        writeln!(out, "{}", line.trim_end())?;
        if let Some(first) = r.reason.split(" | ").next().filter(|s| !s.is_empty()) {
            // Drop the "container NAME: " prefix: the line above names it.
            let text = first
                .strip_prefix(&format!("container {}: ", r.container))
                .unwrap_or(first);
            writeln!(out, "         {}", fit(text, WIDTH - 9))?;
        }
    }
    let unknown_requests = report
        .recommendations
        .iter()
        .any(|r| r.current_from == CurrentFrom::Runtime);
    writeln!(out)?;
    if let Some(stat) = report.recommendations.first().map(|r| &r.statistic_name) {
        writeln!(
            out,
            "PEAK: max 5-minute working-set peak, at least the limit of an OOM kill; STAT: the policy statistic ({stat}) of the scraped peaks."
        )?;
    }
    writeln!(
        out,
        "RECOMMENDED: request (p95 of 5-minute peaks) / limit (what the webhook uses)."
    )?;
    if unknown_requests {
        writeln!(
            out,
            "?: request unknown: limits are the running containers'; pass -f MANIFESTS for both."
        )?;
    }
    for n in &report.notes {
        writeln!(out, "{}", fit(&format!("note: {n}"), WIDTH))?;
    }
    for s in &report.skipped {
        writeln!(out, "{}", fit(&format!("skipped: {s}"), WIDTH))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_cut_to_their_width() {
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
