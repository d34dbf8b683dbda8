use clap::Parser;

/// mimalloc instead of glibc malloc: the proxy allocates and frees buffers per request, and glibc's
/// allocator costs a fifth of the CPU there (measured with `perf`; see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = mxgate::cli::Cli::parse();
    mxgate::cli::init_tracing(cli.log_format);
    match mxgate::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mxgate: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
