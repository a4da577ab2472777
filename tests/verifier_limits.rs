//! The verifier under hostile clients, over real TCP: slow and idle connections are closed, the
//! connection cap makes room by closing idle connections, oversized heads and bodies are
//! refused, a wrong-secret flood on an ID does not lock out its holder, and clients hanging up
//! mid-check never run more argon2id at once than the bound; failure rate limits and the
//! failure cache.

mod support_verifier;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keywarden::keys::hash::{hash_secret, HashParams};
use keywarden::verifier::{Forwarding, HttpLimits, Settings};
use reqwest::StatusCode;
use support_verifier::{loopback_proxy, Issued, KeyBuilder, LocalVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on any wait here; the behaviour must happen long before.
const PATIENCE: Duration = Duration::from_secs(20);

fn limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        ..HttpLimits::default()
    }
}

/// A raw HTTP/1.1 request for `/livez` that keeps the connection open.
const KEEP_ALIVE_REQUEST: &[u8] = b"GET /livez HTTP/1.1\r\nHost: verifier\r\n\r\n";

/// Sends one keep-alive request and reads its whole (small) answer.
async fn one_request(stream: &mut TcpStream) -> String {
    stream.write_all(KEEP_ALIVE_REQUEST).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// Whether the server has closed `stream`, waiting up to `PATIENCE` for it.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_client_sending_one_header_byte_a_second_is_cut_off_after_the_header_timeout() {
    let local =
        LocalVerifier::start_with(Settings::default(), Forwarding::default(), limits()).await;
    let mut stream = TcpStream::connect(local.addr).await.unwrap();
    let head = b"GET /v1/check HTTP/1.1\r\nHost: verifier\r\nAuthorization: Basic QUtXOng=\r\n\r\n";
    let mut sent = 0;
    let mut answer = Vec::new();
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(
        sent < head.len(),
        "the connection stayed open for the whole {}-byte head",
        head.len()
    );
    assert!(
        answer.is_empty(),
        "a cut-off head gets no answer: {answer:?}"
    );
    let served = reqwest::get(local.url("/livez")).await.unwrap();
    assert_eq!(served.status(), StatusCode::OK, "other clients are served");
}

#[tokio::test]
async fn a_verify_body_sent_too_slowly_is_answered_408() {
    let local =
        LocalVerifier::start_with(Settings::default(), Forwarding::default(), limits()).await;
    let mut stream = TcpStream::connect(local.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/verify HTTP/1.1\r\nHost: verifier\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut answer))
        .await
        .expect("an answer before the body ends")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let local =
        LocalVerifier::start_with(Settings::default(), Forwarding::default(), limits()).await;
    let mut stream = TcpStream::connect(local.addr).await.unwrap();
    assert!(one_request(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(
        one_request(&mut stream).await.starts_with("HTTP/1.1 200"),
        "the connection is kept alive between requests"
    );
    assert!(closed_by_server(&mut stream).await);
}

#[tokio::test]
async fn at_the_connection_cap_the_longest_idle_connection_makes_room() {
    let capped = HttpLimits {
        max_connections: 3,
        ..HttpLimits::default()
    };
    let local = LocalVerifier::start_with(Settings::default(), Forwarding::default(), capped).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(local.addr).await.unwrap();
        assert!(one_request(&mut stream).await.starts_with("HTTP/1.1 200"));
        idle.push(stream);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut newcomer = TcpStream::connect(local.addr).await.unwrap();
    assert!(
        one_request(&mut newcomer).await.starts_with("HTTP/1.1 200"),
        "a new client is served at the cap"
    );
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the longest-idle connection was closed"
    );
    assert!(
        one_request(&mut idle[2]).await.starts_with("HTTP/1.1 200"),
        "more recently used connections stay open"
    );
}

#[tokio::test]
async fn oversized_heads_and_verify_bodies_are_refused() {
    let small = HttpLimits {
        max_header_bytes: 8 * 1024,
        max_body_bytes: 1024,
        ..HttpLimits::default()
    };
    let local = LocalVerifier::start_with(Settings::default(), Forwarding::default(), small).await;
    let http = reqwest::Client::new();
    let head = http
        .get(local.url("/v1/check"))
        .header("x-padding", "a".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    let body = serde_json::json!({"token": "kwk_x", "origin": "a".repeat(4096)});
    let verify = http
        .post(local.url("/v1/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(verify.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let within = http
        .post(local.url("/v1/verify"))
        .json(&serde_json::json!({"token": "kwk_x"}))
        .send()
        .await
        .unwrap();
    let answer: serde_json::Value = within.json().await.unwrap();
    assert_eq!(answer["code"], "MALFORMED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_flood_from_other_clients_does_not_lock_out_the_holder() {
    let local = LocalVerifier::behind_proxy(Settings::default(), None).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "flooded", &issued).build());
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let limited = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..8)
        .map(|worker| {
            let request = http
                .get(local.url("/v1/check"))
                .header("x-forwarded-for", format!("198.51.100.{}", worker % 4));
            let wrong = issued.with_wrong_secret();
            let (stop, limited) = (stop.clone(), limited.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let sent = request
                        .try_clone()
                        .expect("a plain request")
                        .header("authorization", wrong.with_wrong_secret().basic())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == StatusCode::TOO_MANY_REQUESTS) {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                    // why: about 1,000 requests a second from the eight workers.
                    tokio::time::sleep(Duration::from_millis(8)).await;
                }
            })
        })
        .collect();
    let flooding = tokio::time::timeout(PATIENCE, async {
        while limited.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(flooding.is_ok(), "the flood is being rate-limited");

    let holder = http
        .get(local.url("/v1/check"))
        .header("x-forwarded-for", "203.0.113.10")
        .header("authorization", issued.basic())
        .send()
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.unwrap();
    }
    assert_eq!(
        holder.status(),
        StatusCode::OK,
        "the holder's first verification under the flood"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_check_never_run_more_argon2_at_once_than_the_bound() {
    let settings = Settings {
        max_concurrent_hashes: 1,
        failures_per_second_per_key: 1000,
        failures_per_second_per_client: 1000,
        ..Settings::default()
    };
    let local = LocalVerifier::start(settings).await;
    let issued = Issued::generate();
    // why: the controller's default parameters (the costliest the verifier serves by default)
    // take tens of milliseconds, so each hang-up happens mid-argon2.
    let slow = HashParams::default();
    let mut key = KeyBuilder::new("team-a", "slow", &issued).build();
    if let Some(status) = key.status.as_mut() {
        status.secret_hash = Some(hash_secret(&issued.secret, &slow).unwrap());
    }
    local.verifier.apply_key(&key);

    let verifier = local.verifier.clone();
    let watching = Arc::new(AtomicBool::new(true));
    let most_running = tokio::spawn({
        let watching = watching.clone();
        async move {
            let mut most = 0;
            while watching.load(Ordering::Relaxed) {
                most = most.max(verifier.hashes_running());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            most
        }
    });
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(5))
        .build()
        .unwrap();
    // why: arrivals 3 ms apart, each hanging up after 5 ms, so some client is always waiting
    // for the slot when the one holding it hangs up.
    let storm = (0..24u64).map(|arrival| {
        let request = impatient
            .get(local.url("/v1/check"))
            .header("authorization", issued.with_wrong_secret().basic());
        async move {
            tokio::time::sleep(Duration::from_millis(3 * arrival)).await;
            request.send().await.is_err()
        }
    });
    let hung_up = futures::future::join_all(storm).await;
    assert!(
        hung_up.iter().filter(|gone| **gone).count() > 1,
        "clients hung up before their answer"
    );
    let settled = tokio::time::timeout(PATIENCE, async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        while local.verifier.hashes_running() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(settled.is_ok(), "argon2 work ends");
    watching.store(false, Ordering::Relaxed);
    let most = most_running.await.unwrap();
    assert!(most >= 1, "argon2 ran for the hung-up clients");
    assert_eq!(most, 1, "argon2 runs at once, with a bound of 1");
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_share_the_peers_bucket() {
    let settings = Settings {
        failures_per_second_per_client: 1,
        ..Settings::default()
    };
    // why: only 10.0.0.1 is trusted; the test connects from 127.0.0.1.
    let forwarding = Forwarding {
        trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
        ..loopback_proxy(None)
    };
    let local = LocalVerifier::start_with(settings, forwarding, HttpLimits::default()).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "k", &issued).build());
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for hop in 0..4 {
        let response = http
            .get(local.url("/v1/check"))
            .header("x-forwarded-for", format!("198.51.100.{hop}"))
            .header("x-real-ip", format!("192.0.2.{hop}"))
            .header("authorization", issued.with_wrong_secret().basic())
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "spoofed addresses do not buy a fresh bucket (burst of 2)"
    );
}

#[tokio::test]
async fn wrong_secret_flood_is_rate_limited_without_blocking_the_valid_secret() {
    let settings = Settings {
        failures_per_second_per_key: 1,
        failures_per_second_per_client: 1000,
        ..Settings::default()
    };
    let local = LocalVerifier::start(settings).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "flooded", &issued).build());
    let http = reqwest::Client::new();
    let check = |authorization: String| {
        let request = http
            .get(local.url("/v1/check"))
            .header("authorization", authorization);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(check(issued.basic()).await.status(), StatusCode::OK);

    let mut limited = None;
    for _ in 0..20 {
        let response = check(issued.with_wrong_secret().basic()).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                limited = Some(response);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let limited = limited.expect("a burst of wrong secrets for one ID is rate-limited");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert!(limited.text().await.unwrap().contains("too_many_requests"));
    assert_eq!(
        check(issued.basic()).await.status(),
        StatusCode::OK,
        "the cached valid secret keeps working while its ID is limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_secrets_never_exceed_the_failure_burst() {
    let settings = Settings {
        failures_per_second_per_key: 1,
        failures_per_second_per_client: 1000,
        max_queued_hashes: 64,
        ..Settings::default()
    };
    let local = LocalVerifier::start(settings).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "raced", &issued).build());
    let http = reqwest::Client::new();
    // why: all 24 arrive before the first argon2 run ends (tens of ms); charging after the work
    // would let every one of them through an empty bucket.
    let attempts = (0..24).map(|_| {
        let request = http
            .get(local.url("/v1/check"))
            .header("authorization", issued.with_wrong_secret().basic());
        async move { request.send().await.unwrap().status() }
    });
    let started = std::time::Instant::now();
    let statuses = futures::future::join_all(attempts).await;
    let refilled = usize::try_from(started.elapsed().as_secs()).unwrap_or(usize::MAX) + 1;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        refused + limited,
        statuses.len(),
        "only 401 or 429: {statuses:?}"
    );
    assert!(
        refused <= 2 + refilled,
        "only the burst of 2 failures (plus one a second) reaches argon2, got {refused} x 401"
    );
}

#[tokio::test]
async fn repeated_wrong_secret_is_refused_from_the_failure_cache() {
    let settings = Settings {
        failures_per_second_per_key: 1,
        ..Settings::default()
    };
    let local = LocalVerifier::start(settings).await;
    let issued = Issued::generate();
    local
        .verifier
        .apply_key(&KeyBuilder::new("team-a", "k", &issued).build());
    let wrong = issued.with_wrong_secret().basic();
    let http = reqwest::Client::new();
    for attempt in 0..10 {
        let response = http
            .get(local.url("/v1/check"))
            .header("authorization", &wrong)
            .send()
            .await
            .unwrap();
        // why: one remembered failure costs no argon2 work and so never reaches the limit.
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let metrics = http.get(local.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"keywarden_verifier_cache_lookups_total{outcome="KnownFailure"} 9"#),
        "{metrics}"
    );
}
