//! Runs `mxgate log` on audit files written here: the current and rotated files in time order,
//! filters, the table and `--json`, malformed lines skipped with a count, bad input refused with
//! exit code 2; and `serve` refuses to start when its audit file cannot be opened.

use std::path::Path;
use std::process::{Command, Output};

fn mxgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mxgate"))
}

/// `mxgate log --file <file>`; a configuration named in the environment does not matter then.
fn log(file: &Path, args: &[&str]) -> Output {
    mxgate()
        .arg("log")
        .arg("--file")
        .arg(file)
        .args(args)
        .env("MXGATE_CONFIG", "/nonexistent/mxgate.yml")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn record(event: &str, client: &str, time_ms: u64) -> String {
    format!(
        r#"{{"time_ms":{time_ms},"event":"{event}","user":"github:42","username":"alice","provider":"github","email":"alice@example.com","client_id":"{client}","client_addr":"203.0.113.9","reason":"because"}}"#
    )
}

#[test]
fn log_reads_rotated_files_first_filters_and_counts_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let now = now_ms();
    let old = now - 3 * 86_400_000;
    std::fs::write(
        dir.path().join("audit.jsonl.1"),
        record("login_succeeded", "c-old", old) + "\n",
    )
    .unwrap();
    let current = [
        record("login_succeeded", "c1", now - 1000),
        "{not json".to_string(),
        record("token_issued", "c1", now - 500),
        record("logout", "c2", now),
    ];
    std::fs::write(&file, current.join("\n") + "\n").unwrap();

    let all = log(&file, &[]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let stdout = text(&all.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert!(
        lines[0].starts_with("TIME") && lines[1].contains("c-old") && lines[4].contains("c2"),
        "{stdout}"
    );
    assert!(lines[2].contains("login_succeeded") && lines[2].contains("alice") && lines[2].contains("203.0.113.9"));
    let stderr = text(&all.stderr);
    assert!(stderr.contains("skipped 1 malformed line"), "{stderr}");

    let json = log(
        &file,
        &[
            "--since",
            "24h",
            "--user",
            "ALICE@example.com",
            "--event",
            "token_issued",
            "--event",
            "logout",
            "--json",
        ],
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    assert_eq!(
        text(&json.stdout),
        format!("{}\n{}\n", current[2], current[3]),
        "the lines as written"
    );
    let one_client = log(&file, &["--client", "c1", "--until", "2000-01-01", "--json"]);
    assert_eq!(text(&one_client.stdout), "", "nothing before 2000");
}

#[test]
fn log_refuses_bad_input_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    for (args, message) in [
        (&["--event", "logins"][..], "known events: login_succeeded"),
        (&["--since", "last week"][..], "neither a duration"),
        (&["--since", "1h", "--until", "2h"][..], "--since is after --until"),
    ] {
        let out = log(&file, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains(message), "{args:?}: {}", text(&out.stderr));
    }
    let neither = mxgate().arg("log").env_remove("MXGATE_CONFIG").output().unwrap();
    assert_eq!(neither.status.code(), Some(2));
    assert!(text(&neither.stderr).contains("--config"), "{}", text(&neither.stderr));
}

#[test]
fn serve_does_not_start_without_its_audit_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mxcp.yml"),
        "mxcp: 1\nprojects:\n  demo:\n    profiles:\n      default: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("not-a-folder"), "").unwrap();
    let config = dir.path().join("mxgate.yml");
    std::fs::write(
        &config,
        "listen: 127.0.0.1:1\nupstream: http://127.0.0.1:9\nmxcp_config: mxcp.yml\nthreads: 1\naudit:\n  path: not-a-folder/audit.jsonl\n",
    )
    .unwrap();
    let out = mxgate().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("opening the audit log"),
        "{}",
        text(&out.stderr)
    );
}
