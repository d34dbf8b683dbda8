//! The command line: `mxgate serve`, `mxgate check`, `mxgate sessions`, `mxgate keys`, `mxgate log` and
//! `mxgate healthcheck`.
//! Every setting comes from the config file, which `--config` or `MXGATE_CONFIG` names.

use crate::config;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// What `mxgate healthcheck` probes unless told otherwise: the liveness endpoint on the port
/// the container image exposes.
const DEFAULT_HEALTHCHECK_URL: &str = "http://127.0.0.1:8000/healthz";

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
    /// List or revoke the sessions of a running mxgate (through its admin socket).
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// List or rotate the assertion signing keys (through the running mxgate's admin socket, or
    /// where the key ring is kept when none runs).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Validate the configuration, resolve its secrets and print the effective settings
    /// (secrets redacted). Exits non-zero on any error.
    Check {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
    },
    /// Show the audit log (logins, consents, tokens issued, refreshed and revoked, logouts,
    /// refusals): the current and rotated files in time order, filtered.
    Log(LogArgs),
    /// Exit 0 when a running mxgate answers `GET <url>` with a success status, 1 otherwise: the
    /// container image's health check (the image has no shell and no curl).
    Healthcheck {
        /// `/healthz` (alive) or `/readyz` (store, core and providers reachable) of the running mxgate.
        #[arg(long, env = "MXGATE_HEALTHCHECK_URL", default_value = DEFAULT_HEALTHCHECK_URL)]
        url: url::Url,
        /// Give up after this long (`3s`, `500ms`).
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// `mxgate log`: which records, and how to show them.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// mxgate.yml, whose `audit.path` names the log.
    #[arg(long, short, env = "MXGATE_CONFIG", required_unless_present = "file")]
    config: Option<PathBuf>,
    /// Read this audit file (and its rotated `.1`, `.2` … files) instead of the configured one
    /// (wins over `--config` and `MXGATE_CONFIG`).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Records from this time on: a duration back from now (`24h`, `30m`, `7d`), an RFC 3339
    /// time (`2026-12-01T09:30:00Z`) or a date (`2026-12-01`).
    #[arg(long, value_parser = parse_log_time)]
    since: Option<u64>,
    /// Records up to this time (same forms as `--since`).
    #[arg(long, value_parser = parse_log_time)]
    until: Option<u64>,
    /// Only these events (repeat for several): login_succeeded, login_failed, token_issued, …
    #[arg(long = "event", value_parser = crate::audit::query::parse_event)]
    events: Vec<crate::audit::AuditEvent>,
    /// Only this user: `provider:user-id`, username or email.
    #[arg(long)]
    user: Option<String>,
    /// Only this OAuth client id.
    #[arg(long)]
    client: Option<String>,
    /// Print the JSON lines as they are in the file instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep reading: print records as they are written (also across rotations) until stopped.
    #[arg(long, short)]
    follow: bool,
}

fn parse_log_time(text: &str) -> Result<u64, String> {
    crate::audit::query::parse_time(text, crate::support::now_ms())
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Live sessions, oldest first.
    List {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
        /// Only this user: `provider:user-id`, username or email.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// How many entries each store table holds (expired ones not yet purged included).
    Stats {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
    },
    /// End sessions now: every session of a user, or one session.
    Revoke {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
        #[arg(long, required_unless_present = "session", conflicts_with = "session")]
        user: Option<String>,
        #[arg(long)]
        session: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// The keys of the ring and their states (next, current, retiring).
    List {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add a new signing key: published in the JWKS at once, signing after
    /// `assertion.key_rotation.publish_before`; the old key stays published for
    /// `assertion.key_rotation.overlap` after that.
    Rotate {
        #[arg(long, short, env = "MXGATE_CONFIG")]
        config: PathBuf,
        /// Sign with the new key at once (cores that cached the JWKS fetch it again when they
        /// see the new kid, at most every 30 s: some requests may fail meanwhile).
        #[arg(long)]
        now: bool,
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
    // Before anything signs or verifies a JWT: the provider is chosen at the first use.
    crate::providers::jwt_crypto::install();
    match cli.command {
        Command::Serve { config } => {
            let settings = config::load(&config)?;
            crate::gateway::serve(settings)
        }
        Command::Sessions { action } => sessions(action),
        Command::Log(args) => log(args),
        Command::Keys { action } => crate::admin::keys_cli::run(action),
        Command::Healthcheck { url, timeout } => {
            // Docker reads exit 1 as "unhealthy" (2 is reserved), so this one error has its own code.
            if let Err(e) = healthcheck(&url, timeout) {
                eprintln!("mxgate: unhealthy: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Check { config } => {
            let settings = config::load(&config)?;
            // Compiles the policies' CEL conditions: one that does not compile stops here.
            crate::policy::PolicySet::from_settings(&settings)?;
            print!("{}", serde_yaml::to_string(&settings)?);
            eprintln!("configuration OK: {}", config.display());
            Ok(())
        }
    }
}

/// One `GET` with no proxy and no redirects; success means a 2xx status.
fn healthcheck(url: &url::Url, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;
    let status = client
        .get(url.clone())
        .send()
        .with_context(|| format!("GET {url}"))?
        .status();
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}");
    println!("healthy: GET {url} answered {status}");
    Ok(())
}

/// How often `mxgate log --follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

fn log(args: LogArgs) -> anyhow::Result<()> {
    use crate::audit::{query::Query, reader, table};
    use std::io::Write as _;
    let path = match (args.file, args.config) {
        (Some(file), _) => file,
        (None, Some(config)) => config::load(&config)?.audit.path,
        (None, None) => anyhow::bail!("name the configuration (--config or MXGATE_CONFIG) or the audit file (--file)"),
    };
    if let (Some(since), Some(until)) = (args.since, args.until) {
        anyhow::ensure!(since <= until, "--since is after --until: nothing can match");
    }
    let query = Query {
        since_ms: args.since,
        until_ms: args.until,
        events: args.events,
        user: args.user,
        client: args.client,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !args.json {
        writeln!(out, "{}", table::header())?;
    }
    let mut shown = 0u64;
    let mut emit = |line: &str, record: &crate::audit::AuditRecord| {
        shown += 1;
        match args.json {
            true => writeln!(out, "{line}"),
            false => writeln!(out, "{}", table::format(record)),
        }?;
        if args.follow {
            out.flush()?;
        }
        Ok(())
    };
    let mut scan = reader::Scan::new(&query);
    let result = if args.follow {
        let reported = std::cell::Cell::new(0);
        let report_malformed = |scan: &reader::Scan<'_>| {
            if scan.malformed > reported.get() {
                eprintln!("mxgate: skipped {} malformed line(s)", scan.malformed - reported.get());
                reported.set(scan.malformed);
            }
            true
        };
        reader::follow(&path, &mut scan, &mut emit, FOLLOW_POLL, &report_malformed)
    } else {
        reader::read(&path, &mut scan, &mut emit)
    };
    match result.and_then(|()| out.flush()) {
        // `mxgate log | head`: the reader went away; that is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.with_context(|| format!("reading the audit log {}", path.display()))?,
    }
    if !path.exists() {
        eprintln!("mxgate: no audit file at {} yet", path.display());
    }
    if scan.malformed > 0 {
        eprintln!("mxgate: skipped {} malformed line(s)", scan.malformed);
    }
    eprintln!("{shown} record(s)");
    Ok(())
}

fn sessions(action: SessionsAction) -> anyhow::Result<()> {
    use crate::admin::{client, socket_path, SessionSummary, REVOKE_PATH, SESSIONS_PATH, STORE_PATH};
    let query = |pairs: &[(&str, &Option<String>)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.finish()
    };
    match action {
        SessionsAction::List { config, user, json } => {
            let settings = config::load(&config)?;
            let answer = client::request(
                &socket_path(&settings.data_dir),
                "GET",
                &format!("{SESSIONS_PATH}?{}", query(&[("user", &user)])),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer["sessions"])?);
                return Ok(());
            }
            let sessions: Vec<SessionSummary> = serde_json::from_value(answer["sessions"].clone())?;
            println!(
                "{:<34} {:<24} {:<28} {:<38} {:>10}",
                "SESSION", "USER", "EMAIL", "CLIENT", "EXPIRES IN"
            );
            let now = crate::support::now();
            for s in &sessions {
                let left = humantime::format_duration(std::time::Duration::from_secs(
                    s.expires_at.saturating_sub(now) / 60 * 60,
                ));
                println!(
                    "{:<34} {:<24} {:<28} {:<38} {:>10}",
                    s.session_id,
                    s.username,
                    s.email.as_deref().unwrap_or("-"),
                    s.client_id,
                    left.to_string()
                );
            }
            eprintln!("{} session(s)", sessions.len());
            Ok(())
        }
        SessionsAction::Stats { config } => {
            let settings = config::load(&config)?;
            let answer = client::request(&socket_path(&settings.data_dir), "GET", STORE_PATH)?;
            println!("{}", serde_json::to_string_pretty(&answer["entries"])?);
            Ok(())
        }
        SessionsAction::Revoke { config, user, session } => {
            let settings = config::load(&config)?;
            let answer = client::request(
                &socket_path(&settings.data_dir),
                "POST",
                &format!("{REVOKE_PATH}?{}", query(&[("user", &user), ("session", &session)])),
            )?;
            println!("revoked {} session(s)", answer["revoked_sessions"]);
            Ok(())
        }
    }
}
