//! The HTML report: one self-contained file (no scripts, no external resources). A summary
//! table, then per container its numbers, its reasons, and one inline SVG chart drawn with
//! `plotters`: the 5-minute peaks, the current limit, the recommended limit and request, and the
//! forecast with its band up to the horizon.
//!
//! Chart elements carry stable classes so that tests and stylesheets can find them:
//! `oomguard-peaks`, `oomguard-limit`, `oomguard-recommended`, `oomguard-request`,
//! `oomguard-forecast`, `oomguard-forecast-band`, `oomguard-now`; each chart is
//! `<svg id="chart-N" class="oomguard-chart">` inside `<section id="row-N">`, N the row's index
//! in the report.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{Analysis, Chart, CurrentFrom, Recommendation};
use crate::quantity::format_bytes;
use crate::verdict::{human_secs, Severity};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 320;
/// Points drawn per peak series at most (bucket maxima: a peak stays a peak).
const MAX_POINTS: usize = 900;
const MI: f64 = 1024.0 * 1024.0;

/// One colour per role; the SVG elements drawn in it get the role's class.
const ROLES: [(RGBColor, &str); 7] = [
    (RGBColor(0x1F, 0x77, 0xB4), "oomguard-peaks"),
    (RGBColor(0xD6, 0x27, 0x28), "oomguard-limit"),
    (RGBColor(0x2C, 0xA0, 0x2C), "oomguard-recommended"),
    (RGBColor(0x94, 0x67, 0xBD), "oomguard-request"),
    (RGBColor(0xFF, 0x7F, 0x0E), "oomguard-forecast"),
    (RGBColor(0xFF, 0xBB, 0x78), "oomguard-forecast-band"),
    (RGBColor(0x7F, 0x7F, 0x7F), "oomguard-now"),
];
const PEAKS: RGBColor = ROLES[0].0;
const LIMIT: RGBColor = ROLES[1].0;
const RECOMMENDED: RGBColor = ROLES[2].0;
const REQUEST: RGBColor = ROLES[3].0;
const FORECAST: RGBColor = ROLES[4].0;
const BAND: RGBColor = ROLES[5].0;
const NOW: RGBColor = ROLES[6].0;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;\
color:#222;max-width:960px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 6px}\
.meta{color:#666;font-size:13px;margin-bottom:16px}table{border-collapse:collapse;font-size:13px}\
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right;\
font-variant-numeric:tabular-nums}section{border:1px solid #ddd;border-radius:6px;padding:12px;\
margin:18px 0}.sev{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;\
color:#fff}.critical{background:#c62828}.warn{background:#ef6c00}.info{background:#1565c0}\
.unknown{background:#757575}.ok{background:#2e7d32}ul.reasons{margin:6px 0;padding-left:18px;\
font-size:13px}dl{display:grid;grid-template-columns:repeat(4,auto);gap:2px 12px;font-size:13px;\
margin:6px 0}dt{color:#666}dd{margin:0;font-variant-numeric:tabular-nums}";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn b_u(b: Option<u64>) -> String {
    b.map_or("–".to_string(), |b| format_bytes(b as f64))
}

fn b_f(b: Option<f64>) -> String {
    b.map_or("–".to_string(), format_bytes)
}

fn request_cell(r: &Recommendation) -> String {
    match r.current_from {
        CurrentFrom::Runtime => "unknown".to_string(),
        CurrentFrom::Manifest => b_u(r.request),
    }
}

fn ttl(r: &Recommendation) -> String {
    match (r.pattern, r.time_to_limit_secs) {
        (None, _) => "–".to_string(),
        (Some(p), Some(t)) if t <= 0.0 => format!("{}, at the limit now", p.as_str()),
        (Some(p), Some(t)) => format!("{}, limit in {}", p.as_str(), human_secs(t)),
        (Some(p), None) => p.as_str().to_string(),
    }
}

fn sev(s: Severity) -> String {
    format!(r#"<span class="sev {0}">{0}</span>"#, s.as_str())
}

/// The whole page.
pub fn render(analysis: &Analysis) -> anyhow::Result<String> {
    let report = &analysis.report;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>oomguard recommend: {ns}</title><style>{STYLE}</style></head><body>\n\
         <h1>oomguard recommend</h1><div class=\"meta\">namespaces {ns} · history from {src} · \
         current resources from {cur} · {n} containers, riskiest first</div>\n",
        ns = esc(&report.namespaces.join(", ")),
        src = esc(&report.source),
        cur = esc(&report.current_from),
        n = report.recommendations.len()
    );
    h.push_str(
        "<table id=\"summary\"><tr><th>severity</th><th>workload</th><th>container</th>\
         <th>request</th><th>limit</th><th>OOM kills</th><th>forecast</th>\
         <th>recommended request</th><th>recommended limit</th></tr>\n",
    );
    for (i, r) in report.recommendations.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><a href=\"#row-{i}\">{}/{}</a></td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            sev(r.severity),
            esc(&r.kind.to_lowercase()),
            esc(&r.name),
            esc(&r.container),
            request_cell(r),
            b_u(r.limit),
            r.oom_kills,
            esc(&ttl(r)),
            b_u(r.recommended_request),
            b_u(r.recommended_limit),
        );
    }
    h.push_str("</table>\n");
    for (i, (r, chart)) in report
        .recommendations
        .iter()
        .zip(&analysis.charts)
        .enumerate()
    {
        let _ = write!(
            h,
            "<section class=\"container\" id=\"row-{i}\"><h2>{} {}/{} · {} {}</h2>\n<dl>\
             <dt>request</dt><dd>{}</dd><dt>recommended request</dt><dd id=\"rec-request-{i}\">{}</dd>\
             <dt>limit</dt><dd id=\"limit-{i}\">{}</dd><dt>recommended limit</dt>\
             <dd id=\"rec-limit-{i}\">{}</dd>\
             <dt>peak (5 min)</dt><dd>{}</dd><dt>{} of peaks</dt><dd>{}</dd>\
             <dt>OOM kills</dt><dd>{}</dd><dt>forecast</dt><dd>{}</dd></dl>\n",
            esc(&r.kind),
            esc(&r.namespace),
            esc(&r.name),
            esc(&r.container),
            sev(r.severity),
            request_cell(r),
            b_u(r.recommended_request),
            b_u(r.limit),
            b_u(r.recommended_limit),
            b_f(r.peak),
            esc(&r.statistic_name),
            b_f(r.statistic),
            r.oom_kills,
            esc(&ttl(r)),
        );
        let reasons: Vec<&str> = r.reason.split(" | ").filter(|s| !s.is_empty()).collect();
        if !reasons.is_empty() {
            h.push_str("<ul class=\"reasons\">");
            for reason in reasons {
                let _ = write!(h, "<li>{}</li>", esc(reason));
            }
            h.push_str("</ul>\n");
        }
        h.push_str(&svg(i, r, chart)?);
        h.push_str("</section>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"meta\">Recommended request: the p95 of the 5-minute working-set peaks \
         (rounded up to Mi, at most the recommended limit). Recommended limit: what the oomguard \
         webhook uses. {}</p></body></html>",
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!("Skipped: {}.", esc(&report.skipped.join("; ")))
        }
    );
    Ok(h)
}

/// Keeps the largest value of each bucket so that at most `MAX_POINTS` are drawn.
fn downsample(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let per = points.len().div_ceil(MAX_POINTS);
    points
        .chunks(per)
        .filter_map(|c| c.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)))
        .collect()
}

/// An x-axis label: the time from now in the axis' unit (hours, or days for long spans).
fn x_label(v: f64, unit: &str) -> String {
    let v = (v * 10.0).round() / 10.0;
    if v == 0.0 {
        "now".to_string()
    } else {
        format!("{v:+}{unit}")
    }
}

/// One chart as inline SVG.
fn svg(index: usize, r: &Recommendation, c: &Chart) -> anyhow::Result<String> {
    let now = c.now;
    let first = c
        .peaks
        .first()
        .map_or(now - 86_400, |p| p.t)
        .min(c.fit_at.unwrap_or(now));
    // The x axis counts hours from now, or days when the history spans more than four.
    let (unit_secs, unit) = if now - first > 4 * 86_400 {
        (86_400.0, "d")
    } else {
        (3600.0, "h")
    };
    let hours = |t: i64| (t - now) as f64 / unit_secs;
    let horizon_h = r.horizon_secs as f64 / unit_secs;
    let peaks: Vec<(f64, f64)> = downsample(
        &c.peaks
            .iter()
            .map(|s| (hours(s.t), s.bytes / MI))
            .collect::<Vec<_>>(),
    );
    let x0 = hours(first).min(-1.0);
    let x1 = horizon_h.max(0.1);
    let mi = |b: Option<u64>| b.map(|b| b as f64 / MI);
    let limit = mi(r.limit);
    let rec = mi(r.recommended_limit);
    let rec_req = mi(r.recommended_request);
    let top = peaks
        .iter()
        .map(|p| p.1)
        .chain(limit)
        .chain(rec)
        .chain(rec_req)
        .fold(0.0f64, f64::max);
    // Room above the highest line; a fast leak's forecast is cut at the top (it says "beyond").
    let ymax = if top > 0.0 { top * 1.25 } else { 64.0 };

    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(56)
            .caption(
                format!(
                    "{} · 5-minute peaks, limits and the {} forecast",
                    r.container,
                    crate::policy::Duration(r.horizon_secs)
                ),
                ("sans-serif", 15),
            )
            .build_cartesian_2d(x0..x1, 0f64..ymax)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.08))
            .x_labels(10)
            .y_labels(6)
            .x_label_formatter(&|v| x_label(*v, unit))
            .y_label_formatter(&|y| format!("{y:.0}Mi"))
            .x_desc(if unit == "d" {
                "days from the end of the history"
            } else {
                "hours from the end of the history"
            })
            .label_style(("sans-serif", 12))
            .draw()?;

        // The forecast first, so that the lines stay on top of its band.
        if let (Some(f), Some(at)) = (&c.forecast, c.fit_at) {
            let (polygon, line) = forecast_shape(c, f, hours(at), horizon_h, ymax);
            chart
                .draw_series(std::iter::once(Polygon::new(
                    polygon,
                    BAND.mix(0.55).filled(),
                )))?
                .label("forecast band")
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND.filled()));
            chart
                .draw_series(LineSeries::new(line, FORECAST.stroke_width(2)))?
                .label(format!(
                    "forecast ({})",
                    r.pattern.map_or("unknown", |p| p.as_str())
                ))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], FORECAST.stroke_width(2))
                });
        }
        let lines = [
            (Some(peaks), PEAKS, 1, "5-minute peaks".to_string()),
            (
                limit.map(|l| vec![(x0, l), (x1, l)]),
                LIMIT,
                2,
                format!("current limit {}", b_u(r.limit)),
            ),
            (
                rec.map(|v| vec![(x0, v), (x1, v)]),
                RECOMMENDED,
                2,
                format!("recommended limit {}", b_u(r.recommended_limit)),
            ),
            (
                rec_req.map(|v| vec![(x0, v), (x1, v)]),
                REQUEST,
                1,
                format!("recommended request {}", b_u(r.recommended_request)),
            ),
        ];
        for (points, colour, width, label) in lines {
            let Some(points) = points.filter(|p| !p.is_empty()) else {
                continue;
            };
            // The legend's stroke: the peaks' is drawn thicker than their line to be seen.
            let legend = if colour == PEAKS { 2 } else { width };
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(width)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(legend))
                });
        }
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (0.0, ymax)],
            NOW.stroke_width(1),
        ))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 12))
            .draw()?;
        root.present()?;
    }
    Ok(tag(&buf, index, r))
}

/// Points of a chart, (x, y) in its units.
type Points = Vec<(f64, f64)>;

/// The forecast's band (a polygon) and line, in chart units, from the fit's level at `xa` to
/// the horizon at `xb`, cut at `ymax`.
fn forecast_shape(
    c: &Chart,
    f: &crate::forecast::Forecast,
    xa: f64,
    xb: f64,
    ymax: f64,
) -> (Points, Points) {
    let steps = 40;
    let lerp = |a: f64, b: f64, k: f64| a + (b - a) * k;
    let band = 2.0 * c.fit_noise;
    let mut upper = Vec::new();
    let mut lower = Vec::new();
    let mut line = Vec::new();
    for i in 0..=steps {
        let k = f64::from(i) / f64::from(steps);
        let x = lerp(xa, xb, k);
        let clamp = |v: f64| (v / MI).clamp(0.0, ymax);
        upper.push((x, clamp(lerp(c.fit_level + band, f.high, k))));
        lower.push((x, clamp(lerp((c.fit_level - band).max(0.0), f.low, k))));
        line.push((x, clamp(lerp(c.fit_level, f.at_horizon, k))));
    }
    let mut polygon = upper;
    polygon.extend(lower.into_iter().rev());
    (polygon, line)
}

/// Gives the chart its id and a title, and each element drawn in a role's colour its class.
fn tag(svg: &str, index: usize, r: &Recommendation) -> String {
    let mut out = String::with_capacity(svg.len() + 1024);
    for line in svg.lines() {
        if let Some(rest) = line.strip_prefix("<svg ") {
            let _ = writeln!(
                out,
                "<svg id=\"chart-{index}\" class=\"oomguard-chart\" role=\"img\" {rest}\n<title>{} \
                 {}/{} container {}: memory history, limits and forecast</title>",
                esc(&r.kind),
                esc(&r.namespace),
                esc(&r.name),
                esc(&r.container)
            );
            continue;
        }
        let shape = ["<polyline ", "<polygon ", "<rect ", "<circle "]
            .iter()
            .find(|p| line.starts_with(**p));
        let class = shape.and_then(|_| {
            ROLES.iter().find_map(|(color, class)| {
                let hex = format!("\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
                line.contains(&hex).then_some(*class)
            })
        });
        match (shape, class) {
            (Some(p), Some(class)) => {
                let _ = writeln!(out, "{p}class=\"{class}\" {}", &line[p.len()..]);
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsampling_keeps_the_peaks() {
        let pts: Vec<(f64, f64)> = (0..4000).map(|i| (i as f64, (i % 97) as f64)).collect();
        let d = downsample(&pts);
        assert!(d.len() <= MAX_POINTS);
        let max = d.iter().map(|p| p.1).fold(0.0, f64::max);
        assert_eq!(max, 96.0);
    }

    #[test]
    fn x_labels_are_relative_to_now() {
        assert_eq!(x_label(0.0, "h"), "now");
        assert_eq!(x_label(-12.0, "h"), "-12h");
        assert_eq!(x_label(-4.0, "d"), "-4d");
        assert_eq!(x_label(0.5, "d"), "+0.5d");
    }
}
