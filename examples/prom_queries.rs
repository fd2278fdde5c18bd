//! Prints the PromQL one refresh sends, for a namespace and window (documentation, debugging).
//! `cargo run --example prom_queries -- self-healing-platform 14d`

use oomguard::duration::parse as parse_duration;
use oomguard::history::prometheus::queries;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = args
        .first()
        .map(String::as_str)
        .unwrap_or("self-healing-platform");
    let window = parse_duration(args.get(1).map(String::as_str).unwrap_or("14d"))?;
    let w = window.as_secs() as i64;
    // A window ending at a 5-minute boundary; the timestamps only appear in `@` modifiers.
    let start = 1_800_000_000 - w;
    let q = queries::Queries::new(ns, w, start, 300);
    println!(
        "# rules check (instant, sent first: it picks the peaks query)\n{}\n",
        q.rules
    );
    println!(
        "# mapping (instant query at the end of the window; with the peaks and the counters)\n{}\n",
        q.mapping
    );
    println!("# limits (instant)\n{}\n", q.limits);
    println!("# counters (instant)\n{}\n", q.counters);
    println!(
        "# peaks (range query over the window, step 5m)\n{}\n",
        q.peaks
    );
    println!(
        "# peaks with oomguard's recording rules (range query, step 5m)\n{}\n",
        q.peaks_recorded
    );
    let events = queries::events(ns, start, 300, &["POD-A"], &["POD-B"], &["POD-A", "POD-C"])
        .unwrap_or_default();
    println!(
        "# events (range query over the window, step 5m; only for pods whose counters or limits moved)\n{events}"
    );
    Ok(())
}
