//! Runs `oomguard replay` without the CLI wiring: `cargo run --release --example replay -- ARGS`.
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: oomguard::replay::ReplayArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    oomguard::replay::run(&cli.args, &mut std::io::stdout().lock())
}
