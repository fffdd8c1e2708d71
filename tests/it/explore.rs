//! Exploring a file without SQL: pages of rows filtered (`where`), searched (`q`), sorted
//! (`orderby`) and narrowed (`columns`), facets, and downloads of a view. Expected answers
//! come from the rows the test generated, filtered and sorted here in plain Rust; the same
//! checks run on the CSV and on its Parquet and JSON lines conversions uploaded again.

use serde_json::Value;

use crate::harness::{enc, eventually, list_dir, local_folder_stack, metric, new_session, status_json, TestServer};
use crate::sync_kinds::change_stored_content;

/// One generated row.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    region: Option<&'static str>,
    price: Option<f64>,
    /// Days after 2024-01-01.
    day: i64,
    note: Option<String>,
}

const REGIONS: [Option<&str>; 5] = [Some("north"), Some("south"), Some("east"), Some("West"), None];
const ROWS: i64 = 300;

fn rows() -> Vec<Row> {
    (0..ROWS)
        .map(|i| Row {
            id: i,
            region: REGIONS[(i * 7 % 5) as usize],
            price: (i % 11 != 3).then(|| ((i * 37) % 101) as f64 / 4.0),
            day: (i * 13) % 290,
            note: match i % 9 {
                0 => None,
                1 => Some(format!("<b>bold {i}</b>")),
                2 if i == 2 => Some("x".repeat(2_500)),
                _ => Some(format!("note {} north", i % 4)),
            },
        })
        .collect()
}

fn date(day: i64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(day))
        .format("%Y-%m-%d")
        .to_string()
}

fn csv() -> String {
    csv_of(&rows())
}

fn csv_of(rows: &[Row]) -> String {
    let mut out = String::from("id,region,unit price,day,note\n");
    for r in rows {
        let note = r.note.clone().unwrap_or_default().replace('"', "\"\"");
        out.push_str(&format!(
            "{},{},{},{},\"{}\"\n",
            r.id,
            r.region.unwrap_or(""),
            r.price.map(|p| p.to_string()).unwrap_or_default(),
            date(r.day),
            note
        ));
    }
    out
}

async fn view(server: &TestServer, user: i64, name: &str, route: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
    server
        .get(user, &format!("/files/{}/{route}?{}", enc(name), query.join("&")))
        .await
}

/// The `id`s of a page (the first column must be `id`).
fn ids(page: &Value) -> Vec<i64> {
    page["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {page}"))
        .iter()
        .map(|r| r[0].as_i64().unwrap_or_else(|| panic!("id in {r}")))
        .collect()
}

/// Pages through the whole view and checks `total_rows` on each page.
async fn all_ids(server: &TestServer, name: &str, params: &[(&str, &str)], expected: &[i64]) {
    let mut got = Vec::new();
    loop {
        let offset = got.len().to_string();
        let mut p = params.to_vec();
        p.extend([("offset", offset.as_str()), ("limit", "70")]);
        let (status, page) = view(server, 1, name, "rows", &p).await;
        assert_eq!(status, 200, "{params:?}: {page}");
        assert_eq!(
            page["total_rows"].as_u64(),
            Some(expected.len() as u64),
            "{params:?}: {page}"
        );
        let batch = ids(&page);
        let done = batch.len() < 70;
        got.extend(batch);
        if done {
            break;
        }
    }
    assert_eq!(got, expected, "{name}: {params:?}");
}

fn expect(filter: impl Fn(&Row) -> bool) -> Vec<i64> {
    rows().into_iter().filter(|r| filter(r)).map(|r| r.id).collect()
}

async fn upload(server: &TestServer, user: i64, name: &str, filename: &str, body: Vec<u8>) {
    let (status, rec) = server.upload(user, name, &new_session(), filename, body).await;
    assert_eq!(status, 201, "{name}: {rec}");
}

async fn converted(server: &TestServer, name: &str, format: &str) -> Vec<u8> {
    let resp = server
        .client
        .get(server.url(&format!("/files/{}/content?format={format}", enc(name))))
        .bearer_auth(server.token(1))
        .send()
        .await
        .expect("conversion");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn pages_filters_sorts_and_search_agree_with_the_rows_on_every_format() {
    let server = TestServer::start().await;
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    let parquet = converted(&server, "sales", "parquet").await;
    upload(&server, 1, "sales pq", "sales.parquet", parquet).await;
    let jsonl = converted(&server, "sales", "jsonl").await;
    upload(&server, 1, "sales jl", "sales.jsonl", jsonl).await;

    for name in ["sales", "sales pq", "sales jl"] {
        // The whole file, any page of it, with the table's columns and dtypes.
        let (status, page) = view(&server, 1, name, "rows", &[]).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total_rows"], ROWS, "{page}");
        assert_eq!(page["offset"], 0);
        assert_eq!(ids(&page), (0..100).collect::<Vec<_>>(), "default limit 100");
        let names: Vec<&str> = page["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id", "region", "unit price", "day", "note"]);
        assert_eq!(page["columns"][0]["dtype"], "int64", "{name}");
        assert_eq!(page["columns"][2]["dtype"], "float64", "{name}");
        let (_, far) = view(&server, 1, name, "rows", &[("offset", "290"), ("limit", "1000")]).await;
        assert_eq!(ids(&far), (290..ROWS).collect::<Vec<_>>());

        all_ids(
            &server,
            name,
            &[("where", "region = 'north' AND \"unit price\" > 10")],
            &expect(|r| r.region == Some("north") && r.price.is_some_and(|p| p > 10.0)),
        )
        .await;
        all_ids(
            &server,
            name,
            &[("where", "\"unit price\" IN (2.5, 20, 0)")],
            &expect(|r| r.price.is_some_and(|p| [2.5, 20.0, 0.0].contains(&p))),
        )
        .await;
        all_ids(
            &server,
            name,
            &[("where", "region IS NULL OR region ILIKE 'w%'")],
            &expect(|r| r.region.is_none_or(|g| g.to_lowercase().starts_with('w'))),
        )
        .await;
        all_ids(
            &server,
            name,
            &[("where", "note LIKE '%bold%' AND NOT id < 100")],
            &expect(|r| r.note.as_deref().is_some_and(|n| n.contains("bold")) && r.id >= 100),
        )
        .await;
        // Dates compare as dates. (Written to JSON lines, dates are text, and read back
        // they stay text: there `day` compares as text.)
        let dates = page["columns"][3]["dtype"].as_str().unwrap().starts_with("datetime64");
        assert!(dates || name == "sales jl", "{name}: {page}");
        if dates {
            date_filters(&server, name).await;
        }

        // Sorted: descending price, nulls last, ties by id.
        let mut sorted = rows();
        sorted.sort_by(|a, b| match (a.price, b.price) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap().then(a.id.cmp(&b.id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.id.cmp(&b.id),
        });
        let order: Vec<i64> = sorted.iter().map(|r| r.id).collect();
        all_ids(&server, name, &[("orderby", "\"unit price\" DESC, id")], &order).await;
        // Rows that tie keep the file's order, page after page (a stable sort of the rows).
        let mut by_region = rows();
        by_region.sort_by(|a, b| match (a.region, b.region) {
            (Some(x), Some(y)) => y.cmp(x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        let order: Vec<i64> = by_region.iter().map(|r| r.id).collect();
        all_ids(&server, name, &[("orderby", "region DESC")], &order).await;
        // Sorted and filtered: the positions of the filtered rows, in the sort's order.
        let mut cheap: Vec<&Row> = sorted.iter().filter(|r| r.price.is_some_and(|p| p < 10.0)).collect();
        cheap.sort_by(|a, b| b.price.partial_cmp(&a.price).unwrap());
        let order: Vec<i64> = cheap.iter().map(|r| r.id).collect();
        all_ids(
            &server,
            name,
            &[("orderby", "\"unit price\" DESC"), ("where", "\"unit price\" < 10")],
            &order,
        )
        .await;
        // Nulls first when asked; a sort and a filter together.
        let (_, page) = view(
            &server,
            1,
            name,
            "rows",
            &[("orderby", "\"unit price\" NULLS FIRST, id"), ("limit", "3")],
        )
        .await;
        let nulls: Vec<i64> = expect(|r| r.price.is_none()).into_iter().take(3).collect();
        assert_eq!(ids(&page), nulls, "{page}");

        // Search: case-insensitive, text columns only (a number in `id` is not a hit).
        all_ids(
            &server,
            name,
            &[("q", "NORTH")],
            &expect(|r| r.region == Some("north") || r.note.as_deref().is_some_and(|n| n.contains("north"))),
        )
        .await;
        all_ids(
            &server,
            name,
            &[("q", "bold 1")],
            &expect(|r| r.note.as_deref().is_some_and(|n| n.contains("bold 1"))),
        )
        .await;
        let (_, none) = view(&server, 1, name, "rows", &[("q", "299")]).await;
        assert_eq!(none["total_rows"], 0, "ids are not searched: {none}");

        // Chosen columns, in the order asked.
        let (status, page) = view(
            &server,
            1,
            name,
            "rows",
            &[("columns", "id,unit price"), ("limit", "2")],
        )
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["columns"].as_array().unwrap().len(), 2, "{page}");
        assert_eq!(page["rows"][1][1], 9.25, "{page}");
    }
}

async fn date_filters(server: &TestServer, name: &str) {
    all_ids(
        server,
        name,
        &[("where", "day BETWEEN '2024-03-01' AND '2024-03-31'")],
        &expect(|r| (60..=90).contains(&r.day)),
    )
    .await;
    all_ids(
        server,
        name,
        &[("where", "day > '2024-10-01'")],
        &expect(|r| r.day > 274),
    )
    .await;
}

#[tokio::test]
async fn long_cells_are_cut_and_said_markup_comes_back_as_text() {
    let server = TestServer::start().await;
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    let (status, page) = view(&server, 1, "sales", "rows", &[("limit", "3")]).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["cut"], serde_json::json!([[2, 4]]), "{page}");
    assert_eq!(page["rows"][2][4].as_str().unwrap().chars().count(), 1_000);
    assert_eq!(page["rows"][1][4], "<b>bold 1</b>");
}

#[tokio::test]
async fn facets_count_values_periods_and_bins() {
    let server = TestServer::start().await;
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    let (status, body) = view(
        &server,
        1,
        "sales",
        "facets",
        &[("columns", "region,day,unit price"), ("limit", "3")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_rows"], ROWS);
    let all = rows();

    let region = &body["facets"]["region"];
    assert_eq!(region["kind"], "values", "{region}");
    let values = region["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{region}");
    let count = |g: Option<&str>| all.iter().filter(|r| r.region == g).count() as u64;
    for v in values {
        let g = v["value"].as_str();
        let g = REGIONS.iter().copied().find(|r| *r == g).expect("a region");
        assert_eq!(v["count"].as_u64(), Some(count(g)), "{v}");
    }
    let shown: u64 = values.iter().map(|v| v["count"].as_u64().unwrap()).sum();
    assert_eq!(region["other"].as_u64(), Some(ROWS as u64 - shown));

    // 290 days: counted by month.
    let day = &body["facets"]["day"];
    assert_eq!(
        (day["kind"].as_str(), day["period"].as_str()),
        (Some("dates"), Some("month")),
        "{day}"
    );
    let march = day["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == "2024-03")
        .unwrap();
    assert_eq!(
        march["count"].as_u64(),
        Some(all.iter().filter(|r| (60..=90).contains(&r.day)).count() as u64)
    );

    // Numbers: three bins from the smallest to the largest, then the missing ones.
    let price = &body["facets"]["unit price"];
    assert_eq!(price["kind"], "bins", "{price}");
    let bins = price["values"].as_array().unwrap();
    let known: Vec<f64> = all.iter().filter_map(|r| r.price).collect();
    let (lo, hi) = (
        known.iter().cloned().fold(f64::MAX, f64::min),
        known.iter().cloned().fold(f64::MIN, f64::max),
    );
    assert_eq!(bins[0]["value"].as_f64(), Some(lo), "{price}");
    assert_eq!(bins[2]["to"].as_f64(), Some(hi), "{price}");
    let width = (hi - lo) / 3.0;
    for (i, bin) in bins[..3].iter().enumerate() {
        let n = known
            .iter()
            .filter(|p| (((*p - lo) / width).floor() as usize).min(2) == i)
            .count();
        assert_eq!(bin["count"].as_u64(), Some(n as u64), "bin {i}: {price}");
    }
    assert_eq!(bins[3]["value"], Value::Null);
    assert_eq!(bins[3]["count"].as_u64(), Some((ROWS as usize - known.len()) as u64));

    // Under a filter.
    let (_, north) = view(
        &server,
        1,
        "sales",
        "facets",
        &[("columns", "region"), ("where", "region = 'north'")],
    )
    .await;
    assert_eq!(north["total_rows"].as_u64(), Some(count(Some("north"))));
    assert_eq!(north["facets"]["region"]["values"][0]["value"], "north");
}

#[tokio::test]
async fn a_file_with_no_rows_has_an_empty_page_and_empty_facets() {
    let server = TestServer::start().await;
    upload(&server, 1, "empty", "empty.csv", b"id,region,day\n".to_vec()).await;
    let (status, page) = view(&server, 1, "empty", "rows", &[]).await;
    assert_eq!((status, page["total_rows"].as_u64()), (200, Some(0)), "{page}");
    let (status, body) = view(&server, 1, "empty", "facets", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_rows"], 0, "{body}");
    assert_eq!(body["facets"]["region"]["values"], serde_json::json!([]), "{body}");
    // Filtered down to nothing: the same.
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    let (status, body) = view(&server, 1, "sales", "facets", &[("where", "id < 0")]).await;
    assert_eq!((status, body["total_rows"].as_u64()), (200, Some(0)), "{body}");
    for facet in body["facets"].as_object().unwrap().values() {
        assert!(facet["values"].as_array().unwrap().is_empty(), "{body}");
    }
}

#[tokio::test]
async fn a_view_downloads_whole_in_its_order() {
    let server = TestServer::start().await;
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    let want = expect(|r| r.region == Some("south"));
    let url = server.url(&format!(
        "/files/sales/rows?format=csv&columns=id,region&where={}&orderby={}",
        enc("region = 'south'"),
        enc("id DESC")
    ));
    let resp = server
        .client
        .get(url)
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,region"));
    let got: Vec<i64> = lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(
        got,
        want.into_iter().rev().collect::<Vec<_>>(),
        "no row limit, in the view's order"
    );

    let resp = server
        .client
        .get(server.url("/files/sales/rows?format=jsonl&where=id%20%3C%203"))
        .bearer_auth(server.token(1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().lines().count(), 3);
    let (status, body) = view(&server, 1, "sales", "rows", &[("format", "docx")]).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_format")), "{body}");
}

#[tokio::test]
async fn injection_and_other_users_files_are_refused_or_harmless() {
    let server = TestServer::start().await;
    upload(&server, 1, "sales", "sales.csv", csv().into_bytes()).await;
    upload(&server, 2, "payroll", "p.csv", b"name,salary\nalice,123456\n".to_vec()).await;
    for (key, value) in [
        ("where", "1=1; DROP TABLE data"),
        ("where", "region = (SELECT name FROM payroll)"),
        ("where", "read_csv('/etc/passwd') IS NULL"),
        ("where", "id IN (SELECT salary FROM payroll)"),
        ("where", "lower(region) = 'north'"),
        ("where", "id + 1 > 2"),
        ("where", "nosuch = 1"),
        ("where", "day > 'soon'"),
        ("where", "id"),
        ("orderby", "id; DELETE FROM data"),
        ("orderby", "random()"),
        ("orderby", "(SELECT 1)"),
        ("columns", "id) FROM data --"),
        ("columns", "salary"),
        ("limit", "0"),
        ("limit", "1001"),
        ("offset", "-1"),
        ("limit", "ten"),
    ] {
        let (status, body) = view(&server, 1, "sales", "rows", &[(key, value)]).await;
        assert_eq!(status, 422, "{key}={value}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty() && body["code"].is_string(), "{key}={value}: {body}");
        assert!(!body.to_string().contains("123456"), "{body}");
    }
    // Quotes in a search are text, nothing more.
    let (status, body) = view(&server, 1, "sales", "rows", &[("q", "'; DROP TABLE data; --")]).await;
    assert_eq!((status, body["total_rows"].as_u64()), (200, Some(0)), "{body}");
    let (status, body) = view(&server, 1, "sales", "rows", &[("where", "note = 'it''s'")]).await;
    assert_eq!((status, body["total_rows"].as_u64()), (200, Some(0)), "{body}");
    // Another user's file is not found, on every route.
    for route in ["rows", "facets"] {
        let (status, body) = view(&server, 1, "payroll", route, &[]).await;
        assert_eq!(status, 404, "{route}: {body}");
        assert!(!body.to_string().contains("alice"), "{body}");
    }
    let (status, _) = view(&server, 2, "payroll", "rows", &[]).await;
    assert_eq!(status, 200);
    let no_token = server.client.get(server.url("/files/sales/rows")).send().await.unwrap();
    assert_eq!(status_json(no_token).await.0, 401);
}

#[tokio::test]
async fn column_names_with_commas_and_quotes_are_chosen_in_double_quotes() {
    let server = TestServer::start().await;
    let body = "id,\"net, after tax\",\"say \"\"hi\"\"\",region\n1,2.5,x,north\n2,3.5,y,south\n";
    upload(&server, 1, "odd", "odd.csv", body.as_bytes().to_vec()).await;
    let chosen = r#""net, after tax", "say ""hi""",region"#;
    let (status, page) = view(&server, 1, "odd", "rows", &[("columns", chosen)]).await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["net, after tax", "say \"hi\"", "region"], "{page}");
    let (status, facets) = view(&server, 1, "odd", "facets", &[("columns", chosen)]).await;
    assert_eq!(status, 200, "{facets}");
    assert!(facets["facets"].get("say \"hi\"").is_some(), "{facets}");
    for (bad, says) in [
        (r#""net, after tax"#, "closing quote"),
        (r#""region"x"#, "after the quoted name"),
    ] {
        let (status, body) = view(&server, 1, "odd", "rows", &[("columns", bad)]).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["detail"].as_str().unwrap().contains(says), "{bad}: {body}");
    }
    // Unquoted, a name with a comma is two names, and the answer says which is unknown.
    let (status, body) = view(&server, 1, "odd", "rows", &[("columns", "net, after tax")]).await;
    assert_eq!(status, 422, "{body}");
}

/// The `id`s of `rows` where the region is north or missing, by descending price (nulls
/// last), ties by id: the view [`kept_views_follow_a_rename_and_never_outlive_new_content`] pages.
fn north_by_price(rows: &[Row]) -> Vec<i64> {
    let mut kept: Vec<&Row> = rows.iter().filter(|r| r.region.is_none_or(|g| g == "north")).collect();
    kept.sort_by(|a, b| match (a.price, b.price) {
        (Some(x), Some(y)) => y.partial_cmp(&x).unwrap().then(a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    kept.iter().map(|r| r.id).collect()
}

/// A filtered or sorted view's row positions are kept between pages, under the file's
/// content: renamed, the file's view answers as before; new content under the same name
/// (stored over the old bytes, or a new upload after a delete) is answered from its own
/// rows, never from positions kept for the old ones.
#[tokio::test]
async fn kept_views_follow_a_rename_and_never_outlive_new_content() {
    let server = TestServer::start().await;
    let params = [
        ("where", "region = 'north' OR region IS NULL"),
        ("orderby", "\"unit price\" DESC, id"),
    ];
    upload(&server, 1, "kept", "kept.csv", csv().into_bytes()).await;
    all_ids(&server, "kept", &params, &north_by_price(&rows())).await;
    // Twice: the second time from the kept positions.
    all_ids(&server, "kept", &params, &north_by_price(&rows())).await;

    let resp = server
        .client
        .patch(server.url("/files/kept"))
        .bearer_auth(server.token(1))
        .json(&serde_json::json!({ "file_name": "moved" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    all_ids(&server, "moved", &params, &north_by_price(&rows())).await;

    if local_folder_stack("kept_views_follow_a_rename_and_never_outlive_new_content") {
        // Fewer rows, stored over the old bytes.
        let even: Vec<Row> = rows().into_iter().filter(|r| r.id % 2 == 0).collect();
        change_stored_content(&server, 1, "moved", csv_of(&even).as_bytes()).await;
        all_ids(&server, "moved", &params, &north_by_price(&even)).await;
    }

    // Deleted, and other rows uploaded under the same name.
    assert_eq!(server.delete(1, "/files/moved").await.0, 200);
    let late: Vec<Row> = rows().into_iter().filter(|r| r.id >= 150).collect();
    upload(&server, 1, "moved", "moved.csv", csv_of(&late).into_bytes()).await;
    all_ids(&server, "moved", &params, &north_by_price(&late)).await;
}

/// A sorted view's first pages come from its first rows alone (and a count of the view);
/// pages past them from the whole sort. Both agree with the rows sorted here, with and
/// without a filter, in whichever order the pages are asked.
#[tokio::test]
async fn a_large_sorted_view_pages_the_same_near_its_start_and_past_it() {
    let server = TestServer::start().await;
    let n: i64 = 12_500;
    let value = |id: i64| (id * 7_919) % 1_000;
    let mut body = String::from("id,v\n");
    for id in 0..n {
        body.push_str(&format!("{id},{}\n", value(id)));
    }
    upload(&server, 1, "large", "large.csv", body.into_bytes()).await;
    for (filter, keep) in [("", 0), ("v >= 100", 100)] {
        let mut order: Vec<i64> = (0..n).filter(|&id| value(id) >= keep).collect();
        order.sort_by(|a, b| value(*b).cmp(&value(*a)).then(a.cmp(b)));
        for offset in [0usize, 9_900, 10_950, 40, 12_400] {
            let offset_text = offset.to_string();
            let mut params = vec![
                ("orderby", "v DESC"),
                ("offset", offset_text.as_str()),
                ("limit", "100"),
            ];
            if !filter.is_empty() {
                params.push(("where", filter));
            }
            let (status, page) = view(&server, 1, "large", "rows", &params).await;
            assert_eq!(status, 200, "{params:?}: {page}");
            assert_eq!(page["total_rows"].as_u64(), Some(order.len() as u64), "{params:?}");
            let want: Vec<i64> = order.iter().skip(offset).take(100).copied().collect();
            assert_eq!(ids(&page), want, "{params:?}");
        }
    }
}

/// Names in the server's cache folder of columnar copies and row files (made files only).
fn query_tables(server: &TestServer) -> Vec<String> {
    list_dir(&server.data.path().join("data").join("query-tables"))
        .into_iter()
        .filter(|n| !n.starts_with(".building-"))
        .collect()
}

/// Right after an upload, the file's columnar copy and row file are made in the background;
/// the first query and the first sorted page then use them instead of making their own.
#[tokio::test]
async fn a_new_files_tables_are_made_ahead_of_its_first_query() {
    let server = TestServer::start().await;
    let (status, record) = server
        .upload(1, "ahead", &new_session(), "ahead.csv", csv().into_bytes())
        .await;
    assert_eq!(status, 201, "{record}");
    let sha = record["sha256"].as_str().expect("sha256").to_string();
    let made = eventually(60, "the copy and row file made after the upload", || async {
        let m = server.metrics().await;
        let done = metric(&m, "file_service_tables_ahead_total", &[("outcome", "made")]) == Some(1.0);
        let names = query_tables(&server);
        let ours = |end: &str| names.iter().any(|n| n.starts_with(&sha) && n.ends_with(end));
        (done && ours(".parquet") && ours(".rows-v1.arrow")).then_some(names)
    })
    .await;
    assert_eq!(made.len(), 2, "{made:?}");

    let (status, answer) = status_json(
        server
            .client
            .post(server.url("/files/ahead/query"))
            .bearer_auth(server.token(1))
            .json(&serde_json::json!({ "sql": "SELECT COUNT(*) AS n FROM data" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0][0].as_i64(), Some(ROWS));
    all_ids(&server, "ahead", &[("orderby", "\"unit price\" DESC, id"), ("where", "region = 'north' OR region IS NULL")], &north_by_price(&rows())).await;
    assert_eq!(query_tables(&server), made, "the query and the pages made nothing new");
}

/// With `QUERY_TABLES_AHEAD=false` nothing is made until asked for: the first query makes
/// the copy, the first sorted page the row file.
#[tokio::test]
async fn tables_ahead_turned_off_leaves_each_table_to_its_first_use() {
    let server = TestServer::start_with(&[("QUERY_TABLES_AHEAD", "false")]).await;
    upload(&server, 1, "later", "later.csv", csv().into_bytes()).await;
    let (status, page) = view(&server, 1, "later", "rows", &[("limit", "5")]).await;
    assert_eq!(status, 200, "{page}");
    let after_first_page = query_tables(&server);
    assert_eq!(after_first_page.len(), 1, "only the copy: {after_first_page:?}");
    assert!(after_first_page[0].ends_with(".parquet"), "{after_first_page:?}");
    all_ids(&server, "later", &[("orderby", "\"unit price\" DESC, id"), ("where", "region = 'north' OR region IS NULL")], &north_by_price(&rows())).await;
    assert_eq!(query_tables(&server).len(), 2, "{:?}", query_tables(&server));
    let m = server.metrics().await;
    assert_eq!(metric(&m, "file_service_tables_ahead_total", &[("outcome", "made")]), None);
}
