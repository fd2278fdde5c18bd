//! Forecast cost: `cargo bench --bench forecast` fits 10,000 series of 4,000 samples on one core
//! and prints the time (the target is under 2 s). Same as `oomguard replay --bench`.

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10_000);
    let b = oomguard::replay::bench(n, 42);
    println!(
        "forecast::fit: {} series x {} samples in {:.3} s on one core ({:.1} us per fit)",
        b.series, b.samples_per_series, b.seconds, b.micros_per_fit
    );
}
