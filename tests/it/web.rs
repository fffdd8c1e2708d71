//! The web page's routes (assets, caching, security headers) and `file-service open`; the
//! page itself is driven in a real browser by tests/browser/.

use crate::harness::TestServer;

async fn get(server: &TestServer, path: &str, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = server.client.get(format!("{}{path}", server.base));
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_security_headers_and_etags() {
    let server = TestServer::start().await;
    let page = get(&server, "/", None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    let csp = header(&page, "content-security-policy").to_string();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-"), "no inline script or eval: {csp}");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let tag = header(&page, "etag").to_string();
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>") && !html.contains("http"),
        "no inline script, nothing remote"
    );

    // Every asset the page names is served with its type; unchanged ones revalidate to 304.
    let assets: Vec<String> = html
        .split("\"/ui/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    assert!(assets.contains(&"app.js".to_string()), "{assets:?}");
    for (name, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("markdown.js", "text/javascript; charset=utf-8"),
        ("charts.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let response = get(&server, &format!("/ui/{name}"), None).await;
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(header(&response, "content-type"), content_type, "{name}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        let etag = header(&response, "etag").to_string();
        let again = get(&server, &format!("/ui/{name}"), Some(&etag)).await;
        assert_eq!(again.status(), 304, "{name}");
        assert!(again.bytes().await.unwrap().is_empty());
    }
    for name in &assets {
        assert_eq!(get(&server, &format!("/ui/{name}"), None).await.status(), 200, "{name}");
    }
    assert_eq!(get(&server, "/", Some(&tag)).await.status(), 304);
    assert_eq!(get(&server, "/", Some("\"stale\"")).await.status(), 200);

    let missing = get(&server, "/ui/nope.js", None).await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "route_not_found");
    // The page is not an API route: no token needed, and other methods are refused.
    let post = server.client.post(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn open_prints_a_sign_in_address_with_a_short_lived_token() {
    let server = TestServer::start().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let output = server
        .cli(&["open", "--user", "7", "--ttl", "2m", "--no-browser"])
        .env("BIND_ADDR", &addr)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let url = stdout.trim();
    let token = url
        .strip_prefix(&format!("http://{addr}/#token="))
        .unwrap_or_else(|| panic!("{url}"));
    // The token signs the user in to the API, for the asked time.
    let listing = server
        .client
        .get(server.url("/files/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(listing.status(), 200);
    let key = jsonwebtoken::DecodingKey::from_secret(crate::harness::SECRET.as_bytes());
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &jsonwebtoken::Validation::default())
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "7");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 120);

    // Nobody listening (a port just freed): the address is still printed, with a word on stderr.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = server
        .cli(&["open", "--no-browser"])
        .env("BIND_ADDR", free.to_string())
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(printed.starts_with(&format!("http://{free}/#token=")), "{printed}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no server answers"));
}
