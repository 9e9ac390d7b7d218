//! Logins under attack, against a real hub over real HTTP: concurrent guesses cannot outrun the
//! limiter, the guesser is throttled and not the account's owner, `X-Forwarded-For` is believed
//! only from a trusted proxy, and a flood of huge or distinct usernames leaves the hub's memory
//! bounded (the real `hub` binary, its RSS read from /proc).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;

fn lo(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn statuses(replies: &[Reply]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in replies {
        *m.entry(r.status).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_guesses_get_five_evaluations_and_the_owner_elsewhere_still_logs_in() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let addr = hub.http_addr.unwrap();
    let attacker = Api::anonymous_from(addr, lo(2));
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..40 {
        let a = attacker.clone();
        guesses.spawn(async move { a.try_login("admin", &format!("guess-{n}"), &[]).await });
    }
    let replies: Vec<Reply> = guesses.join_all().await;
    let by = statuses(&replies);
    // Every guess is answered: evaluated (401) or refused unevaluated (429); at most five
    // reach argon2.
    assert_eq!(by.keys().copied().collect::<Vec<_>>(), [401, 429], "{by:?}");
    assert!(by[&401] <= 5, "{by:?}");
    assert_eq!(by[&401] + by[&429], 40, "{by:?}");
    for r in replies.iter().filter(|r| r.status == 429) {
        assert_eq!(r.json["error"]["code"], "rate_limited");
        let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&wait), "Retry-After {wait}");
    }
    // The guesser stays throttled, even with the right password…
    let r = attacker.try_login("admin", &password("admin"), &[]).await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    // …while the account's owner, from another address, logs in right away.
    let owner = Api::anonymous_from(addr, lo(3)).logged_in("admin").await;
    assert_eq!(owner.get("/api/v1/me").await.json["id"], "admin");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_ignored_from_an_untrusted_peer_and_believed_from_a_trusted_proxy() {
    // Only 127.0.0.2 is a proxy.
    let dir = hub_dir(EMBEDDED, "trusted_proxies = [\"127.0.0.2/32\"]");
    let hub = start_hub(&dir.config_path).await;
    let addr = hub.http_addr.unwrap();

    // A direct client cannot pick whose failures count by varying the header.
    let direct = Api::anonymous_from(addr, lo(3));
    for n in 0..5 {
        let xff = format!("203.0.113.{n}");
        let r = direct
            .try_login("op-county", "wrong", &[("x-forwarded-for", &xff)])
            .await;
        assert_eq!(r.status, 401, "{n}: {:?}", r.json);
    }
    let r = direct
        .try_login(
            "op-county",
            &password("op-county"),
            &[("x-forwarded-for", "198.51.100.9")],
        )
        .await;
    assert_eq!(
        (r.status, &r.json["error"]["code"]),
        (429, &"rate_limited".into())
    );

    // Behind the proxy, each forwarded client has its own count: one address's guesser…
    let proxy = Api::anonymous_from(addr, lo(2));
    let via = |ip: &'static str| [("x-forwarded-for", ip)];
    for _ in 0..5 {
        let r = proxy
            .try_login("op-shishan", "wrong", &via("203.0.113.7"))
            .await;
        assert_eq!(r.status, 401, "{:?}", r.json);
    }
    let r = proxy
        .try_login("op-shishan", "wrong", &via("203.0.113.7"))
        .await;
    assert_eq!(r.status, 429, "{:?}", r.json);
    // …does not lock out another client of the same proxy.
    let r = proxy
        .try_login("op-shishan", &password("op-shishan"), &via("203.0.113.8"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Usernames are bounded: 64 bytes are evaluated, 65 refused before any lookup.
    let r = direct.try_login(&"a".repeat(64), "wrong", &[]).await;
    assert_eq!(r.status, 401, "{:?}", r.json);
    let r = direct.try_login(&"a".repeat(65), "wrong", &[]).await;
    assert_eq!(r.status, 400, "{:?}", r.json);
    assert_eq!(r.json["error"]["field"], "username");
    hub.stop().await;
}

/// Sends `n` logins made by `body(i)`, 16 at a time, from 200 loopback addresses, and returns
/// the count of each status.
async fn flood(
    addr: SocketAddr,
    n: usize,
    body: impl Fn(usize) -> (String, String) + Send + Sync + 'static,
) -> std::collections::BTreeMap<u16, usize> {
    let clients: Arc<Vec<Api>> = Arc::new(
        (0..200u8)
            .map(|i| Api::anonymous_from(addr, lo(10 + i)))
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let body = Arc::new(body);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (clients, next, body) = (clients.clone(), next.clone(), body.clone());
        workers.spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return seen;
                }
                let (login, pw) = body(i);
                seen.push(
                    clients[i % clients.len()]
                        .try_login(&login, &pw, &[])
                        .await
                        .status,
                );
            }
        });
    }
    let mut by = std::collections::BTreeMap::new();
    for s in workers.join_all().await.into_iter().flatten() {
        *by.entry(s).or_default() += 1;
    }
    by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_flood_leaves_the_hub_process_memory_bounded() {
    let port = free_port();
    let dir = hub_dir(EMBEDDED, "");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    set_http_listen(&dir, addr);
    let log = dir.dir.path().join("hub.log");
    let mut child = spawn_hub(&dir.config_path, &log);
    let pid = child.id().unwrap();
    wait_port(port).await;
    // One login first, so the baseline includes what any login needs.
    let _ = Api::anonymous_at(addr).logged_in("admin").await;
    let baseline = rss_bytes(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // 2,000 distinct 100 KB usernames: each refused before any lookup or limiter entry.
    let huge = flood(addr, 2_000, |i| {
        (format!("{i:06}{}", "x".repeat(100 * 1024)), "pw".into())
    })
    .await;
    assert_eq!(huge.into_iter().collect::<Vec<_>>(), [(400, 2_000)]);
    // 300 distinct valid-length unknown usernames: each costs an argon2 check (19 MiB), which
    // run a bounded number at a time; none is refused for the load.
    let long = flood(addr, 300, |i| {
        (format!("{i:06}{}", "y".repeat(58)), "pw".into())
    })
    .await;
    assert_eq!(long.into_iter().collect::<Vec<_>>(), [(401, 300)]);

    sampler.abort();
    let grew = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "hub RSS: baseline {} MB, peak +{} MB",
        baseline >> 20,
        grew >> 20
    );
    // The old hub grew by gigabytes here; 16 argon2 runs at once alone would be ~300 MB, and
    // argon2 memory allocated per check on changing threads grew it by 250-650 MB.
    assert!(grew < 150 << 20, "RSS grew by {} MB", grew >> 20);
    // And the hub still answers its users.
    let _ = Api::anonymous_at(addr).logged_in("op-county").await;
    stop_hub(&mut child).await;
}
