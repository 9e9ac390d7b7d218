//! The hub's secrets, against the real binary: the repository's published demo secrets are
//! refused by `hub run` without `--demo` (recognised by value, each listed with its file and
//! entry); plaintext listeners other hosts can reach are counted in `/metrics`; secret files
//! are written 0600 whatever the umask, and a signing key others can read is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hub::config::HubConfig;
use hub::dispatch::SystemClock;
use hub::gateway::auth::sha256_hex;

/// `hub run -c CONFIG` on loopback port 0 for every listener, plus `extra`.
fn run_args<'a>(config: &'a Path, extra: &'a [&'a str]) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = vec!["run".as_ref(), "-c".as_ref(), config.as_os_str()];
    for a in [
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]
    .iter()
    .chain(extra)
    {
        args.push(a.as_ref());
    }
    args
}

#[test]
fn hub_run_refuses_every_demo_secret_without_demo_and_names_each() {
    let demo = demo_hub_dir();
    let out = run_hub_to_exit(&run_args(&demo.config_path, &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--demo"), "{err}");
    for item in [
        "demo-signing.key: commands.signing_key_file: the committed demo signing key",
        "credentials.toml: credential \"wd-demo-001\" (site): a published demo token",
        "credentials.toml: credential \"tail\" (service): a published demo token",
        "credentials.toml: credential \"p-lina\" (person): a published demo token",
        "users.toml: user \"admin\": a published demo password",
        "users.toml: user \"op-county\": a published demo password",
        "users.toml: user \"op-shishan\": a published demo password",
        "users.toml: user \"m-zhou\": a published demo password",
        "users.toml: user \"m-zhang\": a published demo password",
        "users.toml: user \"jj-liu\": a published demo password",
    ] {
        assert!(err.contains(item), "{item:?} missing from:\n{err}");
    }
    assert!(err.contains("10 published demo secret(s)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_run_with_demo_starts_on_the_demo_config() {
    let demo = demo_hub_dir();
    let log = demo.dir.path().join("hub.log");
    let args = [
        "--demo",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut hub = spawn_hub_with(&demo.config_path, &log, &args);
    let text = wait_for_log(&log, "hub running", Duration::from_secs(30)).await;
    assert!(
        text.contains("published demo secrets are accepted"),
        "{text}"
    );
    stop_hub(&mut hub).await;
}

#[test]
fn demo_secrets_are_recognised_by_value_under_other_names() {
    let dir = hub_dir(EMBEDDED, "");
    let path = dir.dir.path();
    // The demo key under our own file name.
    write_key(
        &path.join("signing.key"),
        protocol::demo::DEMO_SIGNING_KEY.trim(),
    );
    // The `tail` service's demo token copied under another id, and the published pattern
    // `demo-token-<id>` for a new site.
    let mut creds = std::fs::read_to_string(path.join("credentials.toml")).unwrap();
    for (kind, id, token) in [
        ("service", "ops-tool", "demo-token-tail"),
        ("site", "s-new", "demo-token-s-new"),
    ] {
        creds.push_str(&format!(
            "[[credential]]\nkind = \"{kind}\"\nid = \"{id}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(token.as_bytes())
        ));
    }
    std::fs::write(path.join("credentials.toml"), creds).unwrap();
    // A published demo password, freshly hashed (another salt) for a new login.
    hub::users::add_user(
        &path.join("users.toml"),
        hub::users::User {
            login: "chief".into(),
            name: String::new(),
            role: hub::users::UserRole::Admin,
            cells: Vec::new(),
            person: None,
            password: hub::users::hash_password("demo-shishan").unwrap(),
        },
    )
    .unwrap();

    let out = run_hub_to_exit(&run_args(&dir.config_path, &[]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    for item in [
        "signing.key: commands.signing_key_file: the committed demo signing key",
        "credentials.toml: credential \"ops-tool\" (service)",
        "credentials.toml: credential \"s-new\" (site)",
        "users.toml: user \"chief\": a published demo password",
    ] {
        assert!(err.contains(item), "{item:?} missing from:\n{err}");
    }
    // The test hub's own secrets are not demo secrets, whatever their names.
    assert!(err.contains("4 published demo secret(s)"), "{err}");
    for name in ["\"wd-demo-001\"", "\"svc\"", "\"admin\""] {
        assert!(!err.contains(name), "{name} wrongly listed:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_listeners_other_hosts_can_reach_are_counted_in_metrics() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let text = hub.metrics.render();
    assert!(
        text.contains("hub_plaintext_listeners{kind=\"mqtt\"} 0")
            && text.contains("hub_plaintext_listeners{kind=\"http\"} 0"),
        "loopback is not counted:\n{text}"
    );
    hub.stop().await;

    let dir = hub_dir("mode = \"embedded\"\nlisten = [\"0.0.0.0:0\"]", "");
    let mut config = HubConfig::load(&dir.config_path).unwrap();
    config.http.as_mut().unwrap().listen = "0.0.0.0:0".parse().unwrap();
    let loaded = hub::service::Loaded::load(config).unwrap();
    let hub = hub::service::start(loaded, Arc::new(SystemClock))
        .await
        .unwrap();
    let text = hub.metrics.render();
    assert!(
        text.contains("hub_plaintext_listeners{kind=\"mqtt\"} 1")
            && text.contains("hub_plaintext_listeners{kind=\"http\"} 1"),
        "{text}"
    );
    hub.stop().await;
}

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs `hub ARGS` under a permissive umask (022, so a file written with the default mode
/// would come out 0644), the password for `user add` in `$PW`.
fn hub_with_umask_022(args: &[&OsStr]) -> std::process::Output {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "umask 022 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_hub"),
        ])
        .args(args)
        .env("PW", "a-long-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn keygen_credential_add_and_user_add_write_files_only_their_owner_can_read() {
    let dir = hub_dir(EMBEDDED, "");
    let path = dir.dir.path();

    let key = path.join("keys/new.key");
    hub_with_umask_022(&["keygen".as_ref(), "--out".as_ref(), key.as_os_str()]);
    assert_eq!(mode(&key), 0o600, "hub keygen");

    // A new credentials file, and an existing one that was open to everyone.
    let credential_add = |file: &Path, site: &str| {
        hub_with_umask_022(&[
            "credential-add".as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
            "--kind".as_ref(),
            "site".as_ref(),
            site.as_ref(),
        ])
    };
    let creds = path.join("new-credentials.toml");
    credential_add(&creds, "s-1");
    assert_eq!(mode(&creds), 0o600, "hub credential-add, new file");
    let creds = path.join("credentials.toml");
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    credential_add(&creds, "s-2");
    assert_eq!(mode(&creds), 0o600, "hub credential-add, existing file");

    let users = path.join("users.toml");
    std::fs::set_permissions(&users, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    hub_with_umask_022(&[
        "user".as_ref(),
        "add".as_ref(),
        "-c".as_ref(),
        dir.config_path.as_os_str(),
        "--login".as_ref(),
        "op-new".as_ref(),
        "--role".as_ref(),
        "admin".as_ref(),
        "--password-env".as_ref(),
        "PW".as_ref(),
    ]);
    assert_eq!(mode(&users), 0o600, "hub user add");
    let leftovers: Vec<_> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_signing_key_group_or_others_can_read_is_refused_naming_file_and_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = hub_dir(EMBEDDED, "");
    let key = dir.dir.path().join("signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    for args in [
        run_args(&dir.config_path, &[]),
        vec![
            "validate".as_ref(),
            "-c".as_ref(),
            dir.config_path.as_os_str(),
        ],
    ] {
        let out = run_hub_to_exit(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!(
                "{} is readable by its group (mode 0640)",
                key.display()
            )),
            "{err}"
        );
    }
    // Owner-only again: it starts.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_hub_to_exit(&[
        "validate".as_ref(),
        "-c".as_ref(),
        dir.config_path.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
