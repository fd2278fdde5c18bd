//! The OOM/slack frontier: each recommender replayed with its margin swept, as a curve of OOM
//! events per series-day against mean slack, compared along the curves and drawn as SVG.

use plotters::prelude::*;
use serde::Serialize;

/// One replay of a recommender at one margin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub margin: f64,
    pub slack: f64,
    pub oom_rate: f64,
}

/// A recommender's sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    pub name: String,
    /// In margin order.
    pub points: Vec<Point>,
    /// The margin the recommender ships with.
    pub default_margin: f64,
}

impl Curve {
    /// The Pareto-optimal points (no other point has less slack and no more OOMs, or fewer
    /// OOMs and no more slack), by slack: what the recommender can reach by its margin.
    pub fn envelope(&self) -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = self.points.iter().map(|p| (p.slack, p.oom_rate)).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut out: Vec<(f64, f64)> = Vec::new();
        for p in pts {
            if out.last().is_none_or(|l| p.1 < l.1) {
                out.push(p);
            }
        }
        out
    }

    /// The OOM rate the envelope reaches at `slack` (linear between points); None outside it.
    pub fn rate_at_slack(&self, slack: f64) -> Option<f64> {
        let e = self.envelope();
        let (first, last) = (e.first()?, e.last()?);
        if slack < first.0 - 1e-12 {
            return None;
        }
        if slack >= last.0 {
            return Some(last.1);
        }
        for w in e.windows(2) {
            let (a, b) = (w[0], w[1]);
            if slack >= a.0 && slack <= b.0 {
                let f = if b.0 > a.0 {
                    (slack - a.0) / (b.0 - a.0)
                } else {
                    0.0
                };
                return Some(a.1 + f * (b.1 - a.1));
            }
        }
        Some(first.1)
    }

    /// The least slack at which the envelope's OOM rate is at most `rate`; None if never.
    pub fn slack_at_rate(&self, rate: f64) -> Option<f64> {
        let e = self.envelope();
        let first = e.first()?;
        if first.1 <= rate {
            return Some(first.0);
        }
        for w in e.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.1 <= rate {
                let f = if a.1 > b.1 {
                    (a.1 - rate) / (a.1 - b.1)
                } else {
                    1.0
                };
                return Some(a.0 + f * (b.0 - a.0));
            }
        }
        None
    }

    pub fn default_point(&self) -> Option<Point> {
        self.points.iter().copied().min_by(|a, b| {
            (a.margin - self.default_margin)
                .abs()
                .total_cmp(&(b.margin - self.default_margin).abs())
        })
    }
}

/// How oomguard's curve compares with another's where both reach.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub other: String,
    /// The slack range both envelopes cover.
    pub overlap: Option<(f64, f64)>,
    /// oomguard's OOM rate is at most the other's everywhere in the overlap (and below it
    /// somewhere), or the overlap is empty and oomguard reaches less slack at no more OOMs.
    pub below: bool,
    /// The largest excess of oomguard's OOM rate over the other's in the overlap.
    pub worst_excess: f64,
}

/// Compares `ours` with `other` on a grid of slack values.
pub fn compare(ours: &Curve, other: &Curve) -> Comparison {
    let (a, b) = (ours.envelope(), other.envelope());
    let lo = a
        .first()
        .map(|p| p.0)
        .unwrap_or(0.0)
        .max(b.first().map(|p| p.0).unwrap_or(0.0));
    let hi = a
        .last()
        .map(|p| p.0)
        .unwrap_or(0.0)
        .min(b.last().map(|p| p.0).unwrap_or(0.0));
    if a.is_empty() || b.is_empty() || lo > hi {
        // No common slack: below when oomguard's least-slack point has no more OOMs than the
        // other's best and less slack than its least.
        let below = match (a.first(), b.first(), b.iter().map(|p| p.1).reduce(f64::min)) {
            (Some(x), Some(y), Some(best)) => x.0 <= y.0 && x.1 <= best,
            _ => false,
        };
        return Comparison {
            other: other.name.clone(),
            overlap: None,
            below,
            worst_excess: 0.0,
        };
    }
    let mut worst: f64 = f64::NEG_INFINITY;
    let mut strictly = false;
    for i in 0..=200 {
        let s = lo + (hi - lo) * i as f64 / 200.0;
        if let (Some(x), Some(y)) = (ours.rate_at_slack(s), other.rate_at_slack(s)) {
            worst = worst.max(x - y);
            strictly |= x < y - 1e-12;
        }
    }
    // Reaching less slack than the other at all is also being below it there.
    strictly |= a[0].0 < b[0].0 - 1e-9;
    Comparison {
        other: other.name.clone(),
        overlap: Some((lo, hi)),
        below: worst <= 1e-12 && strictly,
        worst_excess: worst.max(0.0),
    }
}

/// "at VPA's OOM rate oomguard's slack is X points lower; at VPA's slack, N x fewer OOMs".
pub fn summary_line(ours: &Curve, vpa: &Curve) -> Option<String> {
    let v = vpa.default_point()?;
    let at_rate = ours
        .slack_at_rate(v.oom_rate)
        .map(|s| (v.slack - s) * 100.0);
    let at_slack = ours.rate_at_slack(v.slack);
    let first = match at_rate {
        Some(x) => format!(
            "at VPA's OOM rate ({:.4}/series-day) oomguard's slack is {x:.1} points lower",
            v.oom_rate
        ),
        None => format!(
            "oomguard does not reach VPA's OOM rate ({:.4}/series-day) on its sweep",
            v.oom_rate
        ),
    };
    let second = match at_slack {
        Some(r) if r <= 0.0 && v.oom_rate <= 0.0 => {
            format!(
                "at VPA's slack ({:.1}%), both have no OOMs",
                v.slack * 100.0
            )
        }
        Some(r) if r <= 0.0 => format!(
            "at VPA's slack ({:.1}%), no OOMs (VPA: {:.4}/series-day)",
            v.slack * 100.0,
            v.oom_rate
        ),
        Some(r) => format!(
            "at VPA's slack ({:.1}%), {:.1}x fewer OOMs",
            v.slack * 100.0,
            v.oom_rate / r
        ),
        None => format!(
            "oomguard's sweep does not reach VPA's slack ({:.1}%)",
            v.slack * 100.0
        ),
    };
    Some(format!("{first}; {second}"))
}

/// OOM rates below this are drawn at it (the y axis is logarithmic).
pub const FLOOR: f64 = 1e-3;

const COLORS: [RGBColor; 8] = [
    RGBColor(0xD6, 0x27, 0x28),
    RGBColor(0x1F, 0x77, 0xB4),
    RGBColor(0x2C, 0xA0, 0x2C),
    RGBColor(0x94, 0x67, 0xBD),
    RGBColor(0xFF, 0x7F, 0x0E),
    RGBColor(0x8C, 0x56, 0x4B),
    RGBColor(0xE3, 0x77, 0xC2),
    RGBColor(0x7F, 0x7F, 0x7F),
];

/// The curves (and single points, e.g. the provisioned limits) as one SVG.
pub fn svg(title: &str, curves: &[Curve], points: &[(String, Point)]) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (860, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let all = curves
            .iter()
            .flat_map(|c| c.points.iter().copied())
            .chain(points.iter().map(|p| p.1));
        let (mut xmax, mut ymax) = (0.05f64, 1.0f64);
        for p in all {
            xmax = xmax.max(p.slack);
            ymax = ymax.max(p.oom_rate);
        }
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..(xmax * 105.0), (FLOOR..ymax * 2.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("mean slack (%)")
            .y_desc("OOM events per series-day (0 drawn at 0.001)")
            .draw()
            .map_err(|e| e.to_string())?;
        let xy = |p: &Point| (p.slack * 100.0, p.oom_rate.max(FLOOR));
        for (i, c) in curves.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let line: Vec<(f64, f64)> = {
                let mut v: Vec<&Point> = c.points.iter().collect();
                v.sort_by(|a, b| a.slack.total_cmp(&b.slack));
                v.into_iter().map(xy).collect()
            };
            let width = if i == 0 { 3 } else { 2 };
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(width)))
                .map_err(|e| e.to_string())?
                .label(c.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
            chart
                .draw_series(
                    c.points
                        .iter()
                        .map(|p| Circle::new(xy(p), 3, color.filled())),
                )
                .map_err(|e| e.to_string())?;
            if let Some(d) = c.default_point() {
                chart
                    .draw_series(std::iter::once(Circle::new(
                        xy(&d),
                        7,
                        color.stroke_width(2),
                    )))
                    .map_err(|e| e.to_string())?;
            }
        }
        for (j, (name, p)) in points.iter().enumerate() {
            let color = COLORS[(curves.len() + j) % COLORS.len()];
            chart
                .draw_series(std::iter::once(TriangleMarker::new(
                    xy(p),
                    8,
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?
                .label(name.clone())
                .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(name: &str, pts: &[(f64, f64)]) -> Curve {
        Curve {
            name: name.into(),
            points: pts
                .iter()
                .enumerate()
                .map(|(i, &(slack, oom_rate))| Point {
                    margin: i as f64 * 0.1,
                    slack,
                    oom_rate,
                })
                .collect(),
            default_margin: 0.1,
        }
    }

    #[test]
    fn interpolates_along_the_envelope() {
        let c = curve("a", &[(0.2, 1.0), (0.3, 0.5), (0.4, 0.0), (0.5, 0.1)]);
        assert_eq!(c.envelope(), vec![(0.2, 1.0), (0.3, 0.5), (0.4, 0.0)]);
        assert!((c.rate_at_slack(0.25).unwrap() - 0.75).abs() < 1e-12);
        assert!((c.slack_at_rate(0.25).unwrap() - 0.35).abs() < 1e-12);
        assert_eq!(c.rate_at_slack(0.1), None);
        assert_eq!(c.rate_at_slack(0.9), Some(0.0));
        assert_eq!(c.slack_at_rate(2.0), Some(0.2));
    }

    #[test]
    fn compares_curves_and_writes_the_summary() {
        let ours = curve("oomguard", &[(0.2, 0.4), (0.3, 0.1), (0.4, 0.0)]);
        let vpa = curve("vpa", &[(0.3, 0.6), (0.4, 0.3), (0.5, 0.05)]);
        let c = compare(&ours, &vpa);
        assert!(c.below, "{c:?}");
        assert!(!compare(&vpa, &ours).below);
        let line = summary_line(&ours, &vpa).unwrap();
        assert!(line.contains("slack is"), "{line}");
        assert!(line.contains("no OOMs"), "{line}");
        let svg = svg(
            "t",
            &[ours, vpa],
            &[(
                "provisioned".into(),
                Point {
                    margin: 0.0,
                    slack: 0.6,
                    oom_rate: 0.0,
                },
            )],
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("oomguard"),
            "{}",
            &svg[..100]
        );
    }
}
