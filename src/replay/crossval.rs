//! `oomguard replay --cross-validate`: the decision's defaults chosen out of sample.
//!
//! The series are grouped in families: a trace file's family is the first word of its name
//! (`bitbrains-rnd-2013-07.csv` is `bitbrains`), and the synthetic set gives one family per
//! shape (`leak` for the leaks of every speed, then `steady`, `step`, `spiky`, `daily`,
//! `batch`, `deploy`, `weekly`). Each family in turn is held out; the defaults are chosen on
//! the others and the held-out family is scored with them:
//!
//! 1. every value of a small grid is replayed one setting at a time from the base policy
//!    (statistic, headroom, leak room, the two lowering rules, the OOM bump);
//! 2. each setting takes its value of least cost on the training families, and that
//!    combination is replayed too;
//! 3. the choice is the candidate (of the grid and the combination) of least cost among the
//!    admissible ones; the base policy when none is.
//!
//! A candidate is *admissible* on the training families when it is no worse than the base
//! policy on both counts there — mean OOM events per series-day and mean slack, each averaged
//! over the families — and meets the targets of issue 12 (no ratchet, at most 0.5 limit changes
//! per series-day). So a default moves only where the other families say it loses nothing: a
//! trade of OOMs for slack (a smaller headroom) is the frontier's business, not the defaults'.
//! The cost, which only ranks admissible candidates, is a family's OOM events per series-day
//! plus its mean slack (one OOM kill priced as one day of the container's whole limit left
//! idle). Every family weighs the same, whatever its number of series. The same choice made on
//! all families is what the cross-validation says the defaults should be.
//!
//! Every candidate is replayed once on every series (the folds only read the scores), so the
//! cost is the grid's size times one replay of oomguard, plus the combinations the folds ask
//! for and one replay of each baseline.

use std::time::Instant;

use serde::Serialize;

use super::score::{Score, Series};
use super::sim::{self, Product};
use super::{baselines, par_map, Row, Setup, Who};
use crate::policy::{Duration, Memory, Percent, PolicySpec, Statistic};
use crate::quantity::MI;

/// One value of one setting of the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    Statistic(Statistic),
    Headroom(f64),
    /// `forecast.leakRoom`, in horizons.
    LeakRoom(u64),
    MinSaving(f64),
    /// `lowering.growthAhead`, seconds.
    GrowthAhead(u64),
    /// `oomBump.ratio` and `oomBump.min` (MiB).
    Bump(f64, u64),
}

impl Setting {
    /// The setting's name (one per axis of the grid).
    pub fn axis(&self) -> &'static str {
        match self {
            Setting::Statistic(_) => "statistic",
            Setting::Headroom(_) => "headroom",
            Setting::LeakRoom(_) => "forecast.leakRoom",
            Setting::MinSaving(_) => "lowering.minSaving",
            Setting::GrowthAhead(_) => "lowering.growthAhead",
            Setting::Bump(..) => "oomBump",
        }
    }

    /// `policy` with this value.
    pub fn apply(&self, p: &mut PolicySpec) {
        match *self {
            Setting::Statistic(s) => p.statistic = s,
            Setting::Headroom(h) => p.headroom = Percent(h),
            Setting::LeakRoom(n) => {
                p.forecast.leak_room = Some(Duration(p.forecast.horizon.secs().saturating_mul(n)))
            }
            Setting::MinSaving(m) => p.lowering.min_saving = Percent(m),
            Setting::GrowthAhead(s) => p.lowering.growth_ahead = Duration(s),
            Setting::Bump(ratio, min) => {
                p.oom_bump.ratio = ratio;
                p.oom_bump.min = Memory(min * MI);
            }
        }
    }

    /// Whether `policy` already has this value.
    pub fn holds_in(&self, p: &PolicySpec) -> bool {
        let mut q = p.clone();
        self.apply(&mut q);
        q == *p
            || matches!(self, Setting::LeakRoom(n)
                if p.forecast.leak_room_secs() == p.forecast.horizon.secs().saturating_mul(*n))
    }

    pub fn label(&self) -> String {
        match *self {
            Setting::Statistic(s) => format!("statistic {}", s.as_str()),
            Setting::Headroom(h) => format!("headroom {}%", h * 100.0),
            Setting::LeakRoom(n) => format!("leakRoom {n}x horizon"),
            Setting::MinSaving(m) => format!("minSaving {}%", m * 100.0),
            Setting::GrowthAhead(s) => format!("growthAhead {}", Duration(s)),
            Setting::Bump(r, m) => format!("oomBump x{r} / +{m}Mi"),
        }
    }
}

/// The values tried, per setting (the base policy's own value is always a candidate).
#[derive(Debug, Clone)]
pub struct Grid {
    pub axes: Vec<Vec<Setting>>,
}

impl Grid {
    /// The shipped grid: 13 values besides the base policy, so 14 replays of oomguard.
    pub fn standard() -> Grid {
        const DAY: u64 = 86_400;
        Grid {
            axes: vec![
                vec![
                    Setting::Statistic(Statistic::Auto),
                    Setting::Statistic(Statistic::Max),
                    Setting::Statistic(Statistic::P99),
                ],
                vec![
                    Setting::Headroom(0.05),
                    Setting::Headroom(0.10),
                    Setting::Headroom(0.15),
                    Setting::Headroom(0.20),
                ],
                vec![
                    Setting::LeakRoom(3),
                    Setting::LeakRoom(5),
                    Setting::LeakRoom(7),
                ],
                vec![
                    Setting::MinSaving(0.0),
                    Setting::MinSaving(0.03),
                    Setting::MinSaving(0.10),
                ],
                vec![
                    Setting::GrowthAhead(0),
                    Setting::GrowthAhead(3 * DAY),
                    Setting::GrowthAhead(7 * DAY),
                ],
                vec![
                    Setting::Bump(1.2, 100),
                    Setting::Bump(1.3, 32),
                    Setting::Bump(1.5, 32),
                ],
            ],
        }
    }
}

/// The base policy with some settings changed (one per axis at most).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    pub changes: Vec<Setting>,
}

impl Candidate {
    pub fn policy(&self, base: &PolicySpec) -> PolicySpec {
        let mut p = base.clone();
        for c in &self.changes {
            c.apply(&mut p);
        }
        p
    }

    /// "as shipped", or the changed settings.
    pub fn label(&self) -> String {
        if self.changes.is_empty() {
            "as shipped".into()
        } else {
            self.changes
                .iter()
                .map(Setting::label)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// A family of series.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub series: Vec<Series>,
}

/// The family of a trace file: the first word of its name.
pub fn family_of_file(stem: &str) -> String {
    stem.split(['-', '_', '.'])
        .find(|w| !w.is_empty())
        .unwrap_or(stem)
        .to_lowercase()
}

/// Per family, then per series.
type Scores = Vec<Vec<Score>>;

fn total(per_series: &[Score]) -> Score {
    let mut t = Score::default();
    for s in per_series {
        t.add(s);
    }
    t
}

/// OOM events per series-day plus mean slack.
pub fn cost(s: &Score) -> f64 {
    s.oom_rate() + s.mean_slack()
}

/// Whether `a` dominates `b`: no more OOM events and no more slack, one of them strictly less.
pub fn dominates(a: &Score, b: &Score) -> bool {
    let (ao, bo) = (a.oom_events, b.oom_events);
    let (asl, bsl) = (a.mean_slack(), b.mean_slack());
    ao <= bo && asl <= bsl && (ao < bo || asl < bsl)
}

/// One held-out family.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    pub held_out: String,
    /// What the other families chose (changes from the base policy).
    pub chosen: String,
    /// The held-out family replayed with the choice, and with the base policy.
    pub result: Row,
    pub base: Row,
    /// Every baseline on the held-out family.
    pub baselines: Vec<Row>,
    /// Baselines that dominate the choice on the held-out family.
    pub dominated_by: Vec<String>,
    /// Series where the choice has more OOM events and more slack than KRR `simple`.
    pub lost_to_krr: Vec<String>,
}

/// One candidate on every family (the grid, in sample).
#[derive(Debug, Clone, Serialize)]
pub struct GridRow {
    pub candidate: String,
    pub families: Vec<Row>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossValidation {
    pub families: Vec<String>,
    pub folds: Vec<Fold>,
    /// The choice made on all families.
    pub chosen_on_all: String,
    /// The held-out results pooled over every fold, with the choices, and with the base.
    pub pooled_result: Row,
    pub pooled_base: Row,
    pub grid: Vec<GridRow>,
    /// oomguard replays (candidates × series) and the seconds it all took.
    pub replays: usize,
    pub seconds: f64,
}

/// Replays every candidate on every series of every family, on the worker threads.
fn replay_candidates(
    setup: &Setup,
    base: &PolicySpec,
    cands: &[Candidate],
    families: &[Family],
) -> anyhow::Result<Vec<Scores>> {
    let policies: Vec<PolicySpec> = cands
        .iter()
        .map(|c| sim::policy_for(&c.policy(base), setup.cfg.mode))
        .collect();
    let jobs: Vec<(usize, usize, usize)> = (0..cands.len())
        .flat_map(|c| {
            families
                .iter()
                .enumerate()
                .flat_map(move |(f, fam)| (0..fam.series.len()).map(move |s| (c, f, s)))
        })
        .collect();
    let results = par_map(&jobs, setup.threads, |&(c, f, s)| {
        let series = &families[f].series[s];
        let mut p = Product::new(&policies[c], setup.cfg, &series.name)?;
        Ok::<Score, anyhow::Error>(sim::replay(series, &mut p, &setup.cfg))
    });
    let mut out: Vec<Scores> = cands
        .iter()
        .map(|_| {
            families
                .iter()
                .map(|f| Vec::with_capacity(f.series.len()))
                .collect()
        })
        .collect();
    for (&(c, f, _), r) in jobs.iter().zip(results) {
        out[c][f].push(r?);
    }
    Ok(out)
}

/// Replays every baseline on every series.
fn replay_baselines(
    setup: &Setup,
    who: &[Who],
    families: &[Family],
) -> anyhow::Result<Vec<Scores>> {
    let jobs: Vec<(usize, usize, usize)> = (0..who.len())
        .flat_map(|w| {
            families
                .iter()
                .enumerate()
                .flat_map(move |(f, fam)| (0..fam.series.len()).map(move |s| (w, f, s)))
        })
        .collect();
    let results = par_map(&jobs, setup.threads, |&(w, f, s)| {
        setup.one(&who[w], &families[f].series[s], None)
    });
    let mut out: Vec<Scores> = who
        .iter()
        .map(|_| {
            families
                .iter()
                .map(|f| Vec::with_capacity(f.series.len()))
                .collect()
        })
        .collect();
    for (&(w, f, _), r) in jobs.iter().zip(results) {
        out[w][f].push(r?);
    }
    Ok(out)
}

/// A candidate on the training families.
#[derive(Debug, Clone, Copy)]
struct Training {
    /// Mean over the families of OOM events per series-day, of mean slack, and of the cost.
    oom_rate: f64,
    slack: f64,
    cost: f64,
    /// No ratchet and at most 0.5 limit changes per series-day, pooled.
    meets_targets: bool,
}

fn training(scores: &Scores, train: &[usize]) -> Training {
    let n = train.len().max(1) as f64;
    let (mut oom_rate, mut slack) = (0.0, 0.0);
    let mut pooled = Score::default();
    for &f in train {
        let t = total(&scores[f]);
        oom_rate += t.oom_rate();
        slack += t.mean_slack();
        pooled.add(&t);
    }
    let (oom_rate, slack) = (oom_rate / n, slack / n);
    Training {
        oom_rate,
        slack,
        cost: oom_rate + slack,
        meets_targets: pooled.ratchets == 0 && pooled.per_day(pooled.limit_changes) <= 0.5,
    }
}

/// No worse than the base on both counts, and meeting the targets.
fn admissible(t: &Training, base: &Training) -> bool {
    t.meets_targets && t.oom_rate <= base.oom_rate && t.slack <= base.slack
}

/// Steps 1–2 of the choice on `train`: per axis, the admissible value of least cost below the
/// base's (none: the base's own value).
fn combination(grid: &[(Candidate, Scores)], axes: &[&'static str], train: &[usize]) -> Candidate {
    let base = training(&grid[0].1, train);
    let mut changes = Vec::new();
    for axis in axes {
        let best = grid
            .iter()
            .filter(|(c, _)| c.changes.len() == 1 && c.changes[0].axis() == *axis)
            .map(|(c, s)| (c.changes[0], training(s, train)))
            .filter(|(_, t)| admissible(t, &base) && t.cost < base.cost)
            .min_by(|a, b| a.1.cost.total_cmp(&b.1.cost));
        if let Some((setting, _)) = best {
            changes.push(setting);
        }
    }
    Candidate { changes }
}

/// Step 3: the admissible candidate of least cost; the base (index 0) when none is.
fn choose(cands: &[(Candidate, Scores)], train: &[usize]) -> usize {
    let base = training(&cands[0].1, train);
    cands
        .iter()
        .enumerate()
        .map(|(i, (_, s))| (i, training(s, train)))
        .filter(|(_, t)| admissible(t, &base))
        .min_by(|a, b| a.1.cost.total_cmp(&b.1.cost))
        .map_or(0, |(i, _)| i)
}

/// Runs the leave-one-family-out cross-validation of `grid` around `base`.
pub fn cross_validate(
    setup: &Setup,
    base: &PolicySpec,
    families: &[Family],
    grid: &Grid,
) -> anyhow::Result<CrossValidation> {
    let started = Instant::now();
    if families.len() < 2 {
        anyhow::bail!(
            "--cross-validate needs at least two families of series (trace files of different \
             names, or --synthetic)"
        );
    }
    // The base policy, then each value that changes it, one setting at a time.
    let mut cands = vec![Candidate::default()];
    let mut axes: Vec<&'static str> = Vec::new();
    for axis in &grid.axes {
        for v in axis {
            if !axes.contains(&v.axis()) {
                axes.push(v.axis());
            }
            if !v.holds_in(base) {
                cands.push(Candidate { changes: vec![*v] });
            }
        }
    }
    let scores = replay_candidates(setup, base, &cands, families)?;
    let mut replays = cands.len() * families.iter().map(|f| f.series.len()).sum::<usize>();
    let mut evaluated: Vec<(Candidate, Scores)> = cands.into_iter().zip(scores).collect();
    let grid_len = evaluated.len();

    // The combinations every fold (and all families together) ask for, replayed at once.
    let all: Vec<usize> = (0..families.len()).collect();
    let trains: Vec<Vec<usize>> = (0..families.len())
        .map(|h| all.iter().copied().filter(|&f| f != h).collect())
        .chain(std::iter::once(all.clone()))
        .collect();
    let mut combos: Vec<Candidate> = Vec::new();
    for train in &trains {
        let c = combination(&evaluated[..grid_len], &axes, train);
        if c.changes.len() > 1 && !combos.contains(&c) {
            combos.push(c);
        }
    }
    if !combos.is_empty() {
        let scores = replay_candidates(setup, base, &combos, families)?;
        replays += combos.len() * families.iter().map(|f| f.series.len()).sum::<usize>();
        evaluated.extend(combos.into_iter().zip(scores));
    }

    let who: Vec<Who> = baselines().into_iter().map(Who::Baseline).collect();
    let others = replay_baselines(setup, &who, families)?;
    let krr = who.iter().position(|w| w.name() == "krr-simple");

    let mut folds = Vec::new();
    let (mut pooled_result, mut pooled_base) = (Score::default(), Score::default());
    for (h, fam) in families.iter().enumerate() {
        let train = &trains[h];
        // The candidates this fold may choose: the grid and its own combination.
        let own = combination(&evaluated[..grid_len], &axes, train);
        let allowed: Vec<usize> = (0..evaluated.len())
            .filter(|&i| i < grid_len || evaluated[i].0 == own)
            .collect();
        let subset: Vec<(Candidate, Scores)> =
            allowed.iter().map(|&i| evaluated[i].clone()).collect();
        let pick = allowed[choose(&subset, train)];
        let (cand, sc) = &evaluated[pick];
        let result = total(&sc[h]);
        let base_score = total(&evaluated[0].1[h]);
        pooled_result.add(&result);
        pooled_base.add(&base_score);
        let mut rows = Vec::new();
        let mut dominated_by = Vec::new();
        for (w, o) in who.iter().zip(&others) {
            let t = total(&o[h]);
            if dominates(&t, &result) {
                dominated_by.push(w.name());
            }
            rows.push(Row::new(&fam.name, &w.name(), &t));
        }
        let lost_to_krr = krr
            .map(|k| {
                fam.series
                    .iter()
                    .zip(sc[h].iter().zip(&others[k][h]))
                    .filter(|(_, (o, k))| super::loses_on_both(o, k))
                    .map(|(s, _)| s.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        folds.push(Fold {
            held_out: fam.name.clone(),
            chosen: cand.label(),
            result: Row::new(&fam.name, "oomguard (chosen)", &result),
            base: Row::new(&fam.name, "oomguard (base)", &base_score),
            baselines: rows,
            dominated_by,
            lost_to_krr,
        });
    }
    let own = combination(&evaluated[..grid_len], &axes, &all);
    let allowed: Vec<usize> = (0..evaluated.len())
        .filter(|&i| i < grid_len || evaluated[i].0 == own)
        .collect();
    let subset: Vec<(Candidate, Scores)> = allowed.iter().map(|&i| evaluated[i].clone()).collect();
    let chosen_on_all = evaluated[allowed[choose(&subset, &all)]].0.label();
    let grid = evaluated
        .iter()
        .map(|(c, s)| GridRow {
            candidate: c.label(),
            families: families
                .iter()
                .zip(s)
                .map(|(f, per)| Row::new(&f.name, &c.label(), &total(per)))
                .collect(),
        })
        .collect();
    Ok(CrossValidation {
        families: families.iter().map(|f| f.name.clone()).collect(),
        folds,
        chosen_on_all,
        pooled_result: Row::new("held out, pooled", "oomguard (chosen)", &pooled_result),
        pooled_base: Row::new("held out, pooled", "oomguard (base)", &pooled_base),
        grid,
        replays,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The families of trace sets and synthetic series: files by the first word of their name,
/// synthetic series by their shape.
pub fn families(
    files: &[(String, Vec<Series>)],
    synthetic: &[super::synthetic::Synthetic],
) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    let mut add = |name: String, s: Series| match out.iter_mut().find(|f| f.name == name) {
        Some(f) => f.series.push(s),
        None => out.push(Family {
            name,
            series: vec![s],
        }),
    };
    for (stem, series) in files {
        for s in series {
            add(family_of_file(stem), s.clone());
        }
    }
    for syn in synthetic {
        add(
            format!("synthetic-{}", syn.kind.family()),
            syn.series.clone(),
        );
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn cell(r: &Row) -> String {
    format!(
        "{} / {:.4} / {} / {:.2} / {}",
        r.oom_events,
        r.oom_events_per_series_day,
        pct(r.mean_slack),
        r.limit_changes_per_series_day,
        r.ratchets
    )
}

/// The cross-validation as text.
pub fn write_table(cv: &CrossValidation, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "cross-validation, leave one family out ({} families: {}); a default moves only to a value no worse on OOMs and slack on the other families; cost (OOMs/series-day + slack) ranks those",
        cv.families.len(),
        cv.families.join(", ")
    )?;
    writeln!(
        out,
        "\nheld-out family: chosen on the others -> OOMs / OOMs per series-day / slack / changes per series-day / ratchets"
    )?;
    for f in &cv.folds {
        writeln!(
            out,
            "\n{} ({} series, {:.1} series-days)",
            f.held_out, f.result.series, f.result.series_days
        )?;
        writeln!(out, "  chosen: {}", f.chosen)?;
        writeln!(out, "  {:<22} {}", "oomguard (chosen)", cell(&f.result))?;
        writeln!(out, "  {:<22} {}", "oomguard (base)", cell(&f.base))?;
        for b in &f.baselines {
            writeln!(out, "  {:<22} {}", b.name, cell(b))?;
        }
        writeln!(
            out,
            "  dominated by: {}; series lost to krr-simple on both counts: {}",
            if f.dominated_by.is_empty() {
                "none".to_string()
            } else {
                f.dominated_by.join(", ")
            },
            if f.lost_to_krr.is_empty() {
                "none".to_string()
            } else {
                f.lost_to_krr.join(", ")
            }
        )?;
    }
    writeln!(out, "\nheld out, pooled over the folds:")?;
    writeln!(
        out,
        "  {:<22} {}",
        "oomguard (chosen)",
        cell(&cv.pooled_result)
    )?;
    writeln!(out, "  {:<22} {}", "oomguard (base)", cell(&cv.pooled_base))?;
    writeln!(out, "\nchosen on all families: {}", cv.chosen_on_all)?;
    writeln!(
        out,
        "\ngrid, in sample (OOMs/series-day @ slack per family):"
    )?;
    for g in &cv.grid {
        let c: f64 = g
            .families
            .iter()
            .map(|r| r.oom_events_per_series_day + r.mean_slack)
            .sum::<f64>()
            / g.families.len().max(1) as f64;
        let cells: Vec<String> = g
            .families
            .iter()
            .map(|r| {
                format!(
                    "{} {:.4}@{}{}",
                    r.trace,
                    r.oom_events_per_series_day,
                    pct(r.mean_slack),
                    if r.ratchets > 0 {
                        format!(" r{}", r.ratchets)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        writeln!(
            out,
            "  {:<44} cost {:.4}: {}",
            g.candidate,
            c,
            cells.join(", ")
        )?;
    }
    writeln!(
        out,
        "\n({} oomguard replays of a series, {:.1} s)",
        cv.replays, cv.seconds
    )?;
    Ok(())
}
