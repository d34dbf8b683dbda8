use clap::Parser;

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
