//! Seeds an mxgate store with live sessions and their tokens, for the benchmark's
//! "mxgate, N sessions" rows (`scripts/bench/sessions.sh`, BENCHMARKS.md): what N logins leave
//! behind, written by the functions a login uses — [`Sessions::create`] (as the provider callback
//! stores a session) and [`Sessions::issue_tokens`] (as the token endpoint issues its access and
//! refresh token) — into the store the configuration names (redb or Redis), before mxgate starts.
//! Each access token goes to a file, one a line, for the load generator to cycle through.
//!
//! The sessions look like logins at the bench's OpenID provider fixture: one user each (with
//! email, name and a group), the provider's tokens at the sizes the fixture issues (opaque access
//! and refresh tokens, an RS256-sized ID token, a provider session id) and a refresh token from
//! mxgate. The provider's access token lasts as long as the session, so no provider refresh falls
//! into a benchmark run.
//!
//! Not part of mxgate: an example, built only on request (`cargo build --release --example
//! seed_sessions`), never into the release binary or the container image.
//!
//! ```text
//! seed_sessions --config mxgate.yml --count 100000 --tokens-out tokens.txt
//! ```

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Parser;
use futures_util::{StreamExt as _, TryStreamExt as _};
use mxgate::config::Settings;
use mxgate::identity::user::{ProviderTokens, UserIdentity};
use mxgate::providers::ProviderSet;
use mxgate::session::bearer::BearerAuthenticator;
use mxgate::session::tokens::IssuePolicy;
use mxgate::session::{SessionRecord, Sessions};
use mxgate::support::{now, random_bytes, random_id};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The OAuth client the seeded sessions were signed in for.
const SEED_CLIENT_ID: &str = "mxgate-bench-seed";
/// The provider's scope as the fixture grants it.
const PROVIDER_SCOPE: &str = "openid profile email groups";
/// Bytes of the fixture's RS256 ID token parts (header, claims, signature), before base64.
const ID_TOKEN_PARTS: [usize; 3] = [50, 400, 256];
/// Sessions stored at most at once (store writes in flight; redb runs them one after another).
const DEFAULT_PARALLEL: usize = 32;

#[derive(Debug, Parser)]
#[command(about = "Seeds an mxgate store with live sessions and prints their access tokens")]
struct Args {
    /// The mxgate.yml the gateway will start with (its store, lifetimes and provider).
    #[arg(long, short)]
    config: PathBuf,
    /// How many sessions (one access and one refresh token each).
    #[arg(long)]
    count: usize,
    /// Where the access tokens go, one a line (a new file, mode 0600).
    #[arg(long)]
    tokens_out: PathBuf,
    /// Sessions stored concurrently.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    parallel: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    let settings = mxgate::config::load(&args.config)?;
    let started = Instant::now();
    let tokens = seed(&settings, args.count, args.parallel)?;
    write_tokens(&args.tokens_out, &tokens)?;
    eprintln!(
        "seed_sessions: {} sessions with their tokens stored in {:.1} s; access tokens in {}",
        tokens.len(),
        started.elapsed().as_secs_f64(),
        args.tokens_out.display()
    );
    Ok(())
}

/// Stores `count` sessions with their tokens in the store of `settings`; returns the access
/// tokens.
fn seed(settings: &Settings, count: usize, parallel: usize) -> anyhow::Result<Vec<String>> {
    let providers = ProviderSet::build(&settings.auth)
        .context("setting up the identity provider")?
        .context("`provider: none` has no sessions to seed")?;
    let provider = providers.primary().provider.name().to_string();
    let store = mxgate::gateway::open_store(settings)?;
    let bearer = Arc::new(BearerAuthenticator::new(store.clone(), 1, 1));
    let sessions = Sessions::new(store.clone(), bearer, Arc::new(providers));
    let policy = IssuePolicy::from_settings(settings, true);
    let at = now();
    let work = futures_util::stream::iter(0..count)
        .map(|i| {
            let (sessions, session) = (&sessions, login_like_session(settings, &provider, i, at));
            async move {
                sessions.create(&session).await?;
                let issued = sessions.issue_tokens(&session, policy, at).await?;
                if (i + 1) % (count / 10).max(1) == 0 {
                    eprintln!("seed_sessions: {} of {count}", i + 1);
                }
                anyhow::Ok(issued.access_token)
            }
        })
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<String>>();
    store
        .block_on(work)
        .context("starting a runtime for the store")?
        .context("storing the sessions")
}

/// Session number `i` as a login at the bench's OpenID provider fixture leaves it.
fn login_like_session(settings: &Settings, provider: &str, i: usize, at: u64) -> SessionRecord {
    let expires_at = at + settings.tokens.session.as_secs();
    let user = format!("seed-user-{i}");
    SessionRecord {
        id: random_id(),
        user: UserIdentity {
            provider: provider.to_string(),
            user_id: format!("seed-{i}"),
            username: user.clone(),
            email: Some(format!("{user}@example.test")),
            name: Some(format!("Seed User {i}")),
            groups: vec!["engineering".into()],
            ..Default::default()
        },
        provider_tokens: ProviderTokens {
            access_token: opaque(),
            refresh_token: Some(opaque()),
            id_token: Some(ID_TOKEN_PARTS.map(random_base64).join(".")),
            expires_at: Some(expires_at),
            scope: Some(PROVIDER_SCOPE.into()),
            obtained_at: at,
        },
        client_id: SEED_CLIENT_ID.into(),
        scope: settings.dynamic_clients.scopes.clone(),
        resource: settings.resource_url(),
        created_at: at,
        expires_at,
        idp_session: Some(random_id()),
    }
}

/// An opaque provider token as oidc-provider issues them (32 random bytes, base64url).
fn opaque() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn random_base64(len: usize) -> String {
    let bytes: Vec<u8> = std::iter::repeat_with(random_bytes::<32>).flatten().take(len).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn write_tokens(path: &Path, tokens: &[String]) -> anyhow::Result<()> {
    let file = mxgate::support::create_private_file(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for token in tokens {
        writeln!(out, "{token}")?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const GATEWAY: &str = "listen: 127.0.0.1:18000\nupstream: http://127.0.0.1:18001\n\
        mxcp_config: mxcp.yml\ndata_dir: data\n";
    const MXCP: &str = "mxcp: 1\nprojects:\n  demo:\n    profiles:\n      default:\n        auth:\n\
        \x20         provider: oidc\n          oidc:\n\
        \x20           config_url: http://127.0.0.1:9/.well-known/openid-configuration\n\
        \x20           client_id: mxgate\n            client_secret: s3cret\n\
        \x20           scope: openid profile email\n            callback_path: /callback\n";

    #[test]
    fn every_seeded_token_opens_its_own_live_session_through_the_request_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mxcp.yml"), MXCP).unwrap();
        std::fs::write(dir.path().join("mxgate.yml"), GATEWAY).unwrap();
        let settings = mxgate::config::load(&dir.path().join("mxgate.yml")).unwrap();

        let tokens = seed(&settings, 25, 4).unwrap();
        let out = dir.path().join("tokens.txt");
        write_tokens(&out, &tokens).unwrap();
        let written: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(written, tokens);

        // What mxgate does when it starts on this store: its own store handle and token cache.
        let store = mxgate::gateway::open_store(&settings).unwrap();
        let bearer = BearerAuthenticator::new(store.clone(), 1000, 3600);
        let (sessions, users) = store
            .block_on(async {
                let mut sessions = HashSet::new();
                let mut users = HashSet::new();
                for token in &tokens {
                    let active = bearer.authenticate(token, now()).await.unwrap();
                    assert_eq!(active.record.client_id, SEED_CLIENT_ID);
                    assert!(active.record.expires_at > now() + 86400);
                    sessions.insert(active.id().to_string());
                    users.insert(active.record.user.key());
                }
                (sessions, users)
            })
            .unwrap();
        assert_eq!(
            (sessions.len(), users.len()),
            (25, 25),
            "one session and user per token"
        );
        assert!(users.iter().all(|u| u.starts_with("oidc:seed-")), "{users:?}");
    }

    #[test]
    fn a_configuration_without_a_provider_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let none = MXCP
            .split_once("          provider: oidc")
            .map(|(head, _)| format!("{head}          provider: none\n"))
            .unwrap();
        std::fs::write(dir.path().join("mxcp.yml"), none).unwrap();
        std::fs::write(dir.path().join("mxgate.yml"), GATEWAY).unwrap();
        let settings = mxgate::config::load(&dir.path().join("mxgate.yml")).unwrap();
        let err = seed(&settings, 1, 1).unwrap_err().to_string();
        assert!(err.contains("provider: none"), "{err}");
    }
}
