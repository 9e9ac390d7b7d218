//! The hub's secrets, against the real binary: the repository's published demo secrets are
//! refused by `hub run` without `--demo` (recognised by value, each listed with its file and
//! entry); plaintext listeners other hosts can reach are counted in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
    ] {
        assert!(err.contains(item), "{item:?} missing from:\n{err}");
    }
    assert!(err.contains("9 published demo secret(s)"), "{err}");
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
