//! The command line: `mxgate serve` and `mxgate check`. Every setting comes from the config
//! file, which `--config` or `MXGATE_CONFIG` names.

use crate::config;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "mxgate",
    version,
    about = "OAuth authentication sidecar for MCP servers (MXCP)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "MXGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// mxgate.yml
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate the configuration, resolve its secrets and print the effective settings
    /// (secrets redacted). Exits non-zero on any error.
    Check {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
    },
}

/// Log filter from `MXGATE_LOG` (or `RUST_LOG`), default `info`.
pub fn init_tracing(format: LogFormat) {
    let filter = std::env::var("MXGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let settings = config::load(&config)?;
            crate::gateway::serve(settings)
        }
        Command::Check { config } => {
            let settings = config::load(&config)?;
            print!("{}", serde_yaml::to_string(&settings)?);
            eprintln!("configuration OK: {}", config.display());
            Ok(())
        }
    }
}
