//! Prints the PromQL one refresh sends, for a namespace and window (documentation, debugging).
//! `cargo run --example prom_queries -- self-healing-platform 14d 2d`

use oomguard::history::prometheus::{parse_duration, queries::Queries};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ns = args
        .first()
        .map(String::as_str)
        .unwrap_or("self-healing-platform");
    let window = parse_duration(args.get(1).map(String::as_str).unwrap_or("14d"))?;
    let recent = parse_duration(args.get(2).map(String::as_str).unwrap_or("2d"))?;
    let q = Queries::new(ns, window.as_secs() as i64, recent.as_secs() as i64);
    println!(
        "# window (range query over the window, step 5m)\n{}\n",
        q.window
    );
    println!("# limit (instant query at now)\n{}", q.limit);
    Ok(())
}
