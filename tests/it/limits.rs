//! Per-user request budgets: 429 with `Retry-After` past `RATE_LIMIT_PER_MINUTE`, on every route a user's token reaches (REST, tus, MCP), never on health and metrics or for replication tokens, and one budget shared by replicas through Redis.

use serde_json::Value;

use crate::harness::{replicate_token, require_service, Stack, TestServer};

const LIMIT: usize = 5;

/// A user id no other test (or run) uses: Redis keeps a budget for two minutes.
fn fresh_user() -> i64 {
    1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as i64
}

/// Lists the user's files on `server`: the status, the `Retry-After` and the body.
async fn list(server: &TestServer, user: i64) -> (u16, Option<u64>, Value) {
    let resp = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(server.token(user))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .expect("Retry-After is whole seconds")
    });
    (status, retry_after, resp.json().await.unwrap_or(Value::Null))
}

fn assert_refused(answer: &(u16, Option<u64>, Value), what: &str) {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, 429, "{what}: {body}");
    assert_eq!(body["code"], "rate_limited", "{what}: {body}");
    assert!(body["detail"].as_str().unwrap().contains("retry in"), "{what}: {body}");
    let retry_after = retry_after.unwrap_or_else(|| panic!("{what}: a 429 says when to retry"));
    assert!((1..=60).contains(&retry_after), "{what}: Retry-After {retry_after}");
}

#[tokio::test]
async fn a_user_past_the_budget_gets_429_on_every_route_and_others_do_not() {
    let server = TestServer::start_with(&[("RATE_LIMIT_PER_MINUTE", &LIMIT.to_string())]).await;
    let (user, other) = (fresh_user(), fresh_user());
    for i in 0..LIMIT {
        let (status, _, body) = list(&server, user).await;
        assert_eq!(status, 200, "request {} of {LIMIT}: {body}", i + 1);
    }
    assert_refused(&list(&server, user).await, "the request past the budget");

    // The same user's tus and MCP requests draw on the same budget.
    let tus = server
        .client
        .post(server.url("/uploads/"))
        .bearer_auth(server.token(user))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "3")
        .header("upload-metadata", "file_name YQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(tus.status().as_u16(), 429);
    assert_eq!(
        tus.headers()["tus-resumable"],
        "1.0.0",
        "a tus answer, also when refused"
    );
    let mcp = server
        .client
        .post(format!("{}/mcp", server.base))
        .bearer_auth(server.token(user))
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status().as_u16(), 429);
    assert!(mcp.headers().contains_key("retry-after"));

    // Another user, the service's own health and metrics, and an instance syncing with a
    // replication token are not held back.
    assert_eq!(list(&server, other).await.0, 200);
    for _ in 0..3 * LIMIT {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let status = server
                .client
                .get(format!("{}{path}", server.base))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status.as_u16(), 200, "{path}");
        }
        let status = server
            .client
            .get(server.url("/changes"))
            .bearer_auth(replicate_token())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 200, "a replication token is not counted");
    }
    assert_refused(&list(&server, user).await, "still past the budget");
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL (run with --include-ignored)"]
async fn replicas_sharing_redis_share_one_budget_per_user() {
    let test = "replicas_sharing_redis_share_one_budget_per_user";
    let admin = require_service("TEST_DATABASE_URL", test);
    let redis = require_service("TEST_REDIS_URL", test);
    let limit = LIMIT.to_string();
    let env = [("RATE_LIMIT_PER_MINUTE", limit.as_str())];
    let a = TestServer::start_on(Stack::PostgresRedis, Some(&admin), Some(&redis), &env).await;
    let b = a.replica(&env).await;
    let user = fresh_user();
    // Alternating between the replicas, and then some at once: LIMIT pass in all.
    let mut passed = 0;
    for i in 0..LIMIT {
        let server = if i % 2 == 0 { &a } else { &b };
        let (status, _, body) = list(server, user).await;
        assert_eq!(status, 200, "request {} of {LIMIT}: {body}", i + 1);
        passed += 1;
    }
    let burst = futures_util::future::join_all((0..10).map(|i| {
        let server = if i % 2 == 0 { &a } else { &b };
        async move { list(server, user).await }
    }))
    .await;
    passed += burst.iter().filter(|r| r.0 == 200).count();
    assert_eq!(passed, LIMIT, "{burst:?}");
    for answer in &burst {
        assert_refused(answer, "a replica's answer past the shared budget");
    }
}
