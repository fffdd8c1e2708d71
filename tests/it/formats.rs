//! Every dataset format over HTTP: Parquet, Arrow IPC, JSON, JSON lines and workbooks, read
//! from files written by pandas, pyarrow, openpyxl, odfpy and xlwt (tests/fixtures/formats,
//! made by its `make.py`, which also wrote `expected.json`: what pandas itself reads from each).

use std::time::Duration;

use serde_json::Value;

use crate::harness::{eventually, get_content, new_session, replicate_token, Stack, TestServer};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn expected(name: &str) -> Value {
    let all: Value = serde_json::from_slice(&fixture("expected.json")).unwrap();
    all[name].clone()
}

async fn download(server: &TestServer, user: i64, name: &str) -> (String, Vec<u8>) {
    let resp = get_content(server, user, name, &[]).await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, resp.bytes().await.unwrap().to_vec())
}

/// The profile's shape, dtypes and missing-value counts are what pandas reads.
fn assert_like_pandas(profile: &Value, pandas: &Value, what: &str) {
    assert_eq!(profile["row_count"], pandas["rows"], "{what}: rows; {profile}");
    let columns = profile["columns"].as_array().unwrap();
    let names: Vec<&str> = columns.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let dtypes: Vec<&str> = columns.iter().map(|c| c["dtype"].as_str().unwrap()).collect();
    let nulls: Vec<u64> = columns.iter().map(|c| c["null_count"].as_u64().unwrap()).collect();
    let want_names: Vec<&str> = pandas["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want_dtypes: Vec<&str> = pandas["dtypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want_nulls: Vec<u64> = pandas["nulls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(names, want_names, "{what}: columns");
    assert_eq!(dtypes, want_dtypes, "{what}: dtypes");
    assert_eq!(nulls, want_nulls, "{what}: missing values");
}

fn column<'a>(profile: &'a Value, name: &str) -> &'a Value {
    profile["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no column {name}: {profile}"))
}

#[tokio::test]
async fn every_format_uploads_summarizes_previews_and_downloads_as_pandas_reads_it() {
    let server = TestServer::start().await;
    let cases = [
        ("typed.parquet", "typed.parquet", "parquet"),
        ("pandas.parquet", "pandas.parquet", "parquet"),
        ("typed.feather", "typed.feather", "feather"),
        ("typed.feather", "typed.arrow", "arrow"),
        ("stream.arrow", "stream.ipc", "ipc"),
        ("records.json", "records.json", "json"),
        ("columns.json", "columns.json", "json"),
        ("lines.jsonl", "lines.jsonl", "jsonl"),
        ("lines.jsonl", "lines.ndjson", "ndjson"),
        ("book.xlsx", "book.xlsx", "xlsx"),
        ("book.xlsx", "book.xlsm", "xlsm"),
        ("book.ods", "book.ods", "ods"),
        ("regions.xls", "regions.xls", "xls"),
    ];
    for (i, (fixture_name, filename, ext)) in cases.into_iter().enumerate() {
        let bytes = fixture(fixture_name);
        let name = format!("f{i}");
        let (status, record) = server.upload(1, &name, &new_session(), filename, bytes.clone()).await;
        assert_eq!(status, 201, "{filename}: {record}");
        assert_eq!(record["format"], ext, "{filename}");
        let pandas = expected(fixture_name);
        assert_eq!(record["row_count"], pandas["rows"], "{filename}");
        assert_eq!(
            record["column_count"].as_u64(),
            pandas["columns"].as_array().map(|c| c.len() as u64),
            "{filename}"
        );
        let (status, profile) = server.get(1, &format!("/files/{name}/profile")).await;
        assert_eq!(status, 200);
        assert_like_pandas(&profile, &pandas, filename);

        // The summary lists the same dtypes, in the original's words.
        let summary = record["summary"].as_str().unwrap();
        let first = &pandas["columns"][0];
        assert!(
            summary.contains(&format!(
                "- **{}**: `{}`",
                first.as_str().unwrap(),
                pandas["dtypes"][0].as_str().unwrap()
            )),
            "{filename}: {summary}"
        );

        // Preview: the profile's columns, the first rows.
        let (status, preview) = server.get(1, &format!("/files/{name}/preview?rows=2")).await;
        assert_eq!(status, 200, "{filename}: {preview}");
        assert_eq!(preview["columns"], pandas["columns"], "{filename}: preview columns");
        assert_eq!(preview["rows"].as_array().unwrap().len(), 2, "{filename}: {preview}");

        // Downloads are the bytes as uploaded, with the format's content type.
        let (content_type, downloaded) = download(&server, 1, &name).await;
        assert!(downloaded == bytes, "{filename}: downloaded bytes differ");
        assert!(!content_type.starts_with("text/csv"), "{filename}: {content_type}");
    }
    let (_, list) = server.get(1, "/files/").await;
    assert_eq!(list.as_array().unwrap().len(), 13);
}

#[tokio::test]
async fn columnar_values_statistics_and_nested_previews() {
    let server = TestServer::start().await;
    let (status, _) = server
        .upload(1, "typed", &new_session(), "typed.parquet", fixture("typed.parquet"))
        .await;
    assert_eq!(status, 201);
    let (_, profile) = server.get(1, "/files/typed/profile").await;
    // Statistics as for CSV: an int8 column's range and mean, a float64 made of integers
    // with a missing value, text and category top values, timestamps as ISO text.
    let i8 = column(&profile, "i8");
    assert_eq!(
        (i8["min"].as_i64(), i8["max"].as_i64(), i8["mean"].as_f64()),
        (Some(-2), Some(5), Some(2.2))
    );
    let nullable = column(&profile, "i64_null");
    assert_eq!(nullable["min"], 1.0);
    assert_eq!(
        nullable["top_values"][0]["value"].as_str().unwrap().ends_with(".0"),
        true,
        "{nullable}"
    );
    let name = column(&profile, "name");
    assert_eq!(name["top_values"][0], serde_json::json!({"value": "ann", "count": 2}));
    let cat = column(&profile, "cat");
    assert_eq!(cat["top_values"][0], serde_json::json!({"value": "x", "count": 3}));
    let ts = column(&profile, "ts");
    assert_eq!(ts["min"], "2024-01-01 10:30:00");
    assert_eq!(ts["max"], "2024-01-05 10:30:00");
    assert_eq!(column(&profile, "day")["top_values"][0]["value"], "2024-02-01");
    assert_eq!(column(&profile, "flag")["top_values"][0]["value"], "True");
    assert_eq!(profile["chunks"], 1, "one row group");

    // Nested values are JSON text in the preview; missing ones are null.
    let (_, preview) = server.get(1, "/files/typed/preview?rows=5").await;
    let at = |row: usize, col: &str| {
        let i = preview["columns"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c == col)
            .unwrap();
        preview["rows"][row][i].clone()
    };
    assert_eq!(at(0, "tags"), "[1,2]");
    assert_eq!(at(2, "tags"), Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(at(0, "point").as_str().unwrap()).unwrap(),
        serde_json::json!({"x": 1, "y": "a"})
    );
    assert_eq!(at(0, "flag"), "True");
    assert_eq!(at(1, "i64_null"), Value::Null);
    assert_eq!(at(0, "ts"), "2024-01-01 10:30:00");
    assert_eq!(at(0, "name"), "ann");

    // pandas' own Parquet: its index is not a column, its nullable Int64 stays Int64.
    let (status, record) = server
        .upload(1, "pd", &new_session(), "pandas.parquet", fixture("pandas.parquet"))
        .await;
    assert_eq!(status, 201, "{record}");
    let (_, preview) = server.get(1, "/files/pd/preview").await;
    assert_eq!(preview["columns"], serde_json::json!(["city", "visits", "score"]));
    assert_eq!(preview["rows"][1], serde_json::json!(["Lima", null, "1.25"]));
}

#[tokio::test]
async fn a_parquet_file_of_many_row_groups_is_read_group_by_group() {
    let server = TestServer::start().await;
    let (status, record) = server
        .upload(
            1,
            "many",
            &new_session(),
            "many.parquet",
            fixture("many_groups.parquet"),
        )
        .await;
    assert_eq!(status, 201, "{record}");
    let pandas = expected("many_groups.parquet");
    let (_, profile) = server.get(1, "/files/many/profile").await;
    assert_like_pandas(&profile, &pandas, "many_groups.parquet");
    assert_eq!(profile["chunks"], pandas["row_groups"]);
    let id = column(&profile, "id");
    assert_eq!((id["min"].as_i64(), id["max"].as_i64()), (Some(0), Some(19_999)));
    assert_eq!(id["unique_count"], 20_000);
    let label = column(&profile, "label");
    assert_eq!(label["unique_count"], 7);
    assert_eq!(
        label["top_values"][0],
        serde_json::json!({"value": "g0", "count": 2858})
    );
    // A preview reads only the first row groups it needs.
    let (_, preview) = server.get(1, "/files/many/preview?rows=600").await;
    assert_eq!(preview["rows"].as_array().unwrap().len(), 600);
    assert_eq!(preview["rows"][599][0], "599");
}

#[tokio::test]
async fn workbook_sheets_the_table_and_a_preview_of_another_sheet() {
    let server = TestServer::start().await;
    let (status, record) = server
        .upload(1, "book", &new_session(), "book.xlsx", fixture("book.xlsx"))
        .await;
    assert_eq!(status, 201, "{record}");
    let (_, profile) = server.get(1, "/files/book/profile").await;
    // The first sheet is empty: the table is the first sheet with data.
    assert_eq!(profile["sheet"], "Sales");
    let shapes: Vec<(String, u64, u64)> = profile["sheets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["rows"].as_u64().unwrap(),
                s["columns"].as_u64().unwrap(),
            )
        })
        .collect();
    let pandas = expected("book.xlsx");
    let want: Vec<(String, u64, u64)> = ["Cover", "Sales", "Regions"]
        .iter()
        .map(|n| {
            let shape = &pandas["sheets"][n];
            (n.to_string(), shape[0].as_u64().unwrap(), shape[1].as_u64().unwrap())
        })
        .collect();
    assert_eq!(shapes, want);
    assert!(
        record["summary"].as_str().unwrap().contains("sheet **Sales**"),
        "{}",
        record["summary"]
    );
    let date = column(&profile, "date");
    assert_eq!(
        (date["min"].as_str(), date["max"].as_str()),
        (Some("2024-01-05"), Some("2024-01-08"))
    );

    let (status, preview) = server.get(1, "/files/book/preview?sheet=Regions").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["columns"], expected("book.xlsx#Regions")["columns"]);
    assert_eq!(
        preview["rows"],
        serde_json::json!([["north", "100"], ["south", "250"], ["east", "175"]])
    );
    let (status, preview) = server.get(1, "/files/book/preview").await;
    assert_eq!(status, 200);
    assert_eq!(preview["columns"], pandas["columns"]);
    assert_eq!(preview["rows"][0][0], "2024-01-05");
    let (status, body) = server.get(1, "/files/book/preview?sheet=Nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Regions"), "{body}");
    // Only workbooks have sheets.
    server
        .upload(1, "t", &new_session(), "t.parquet", fixture("typed.parquet"))
        .await;
    assert_eq!(server.get(1, "/files/t/preview?sheet=Sales").await.0, 404);
}

#[tokio::test]
async fn wrong_extension_corrupt_encrypted_and_empty_files_are_422_and_nothing_is_kept() {
    let server = TestServer::start().await;
    let parquet = fixture("typed.parquet");
    let truncated_parquet = parquet[..parquet.len() / 2].to_vec();
    // A footer that says it is longer than the file.
    let mut bad_footer = parquet.clone();
    let n = bad_footer.len();
    bad_footer[n - 8..n - 4].copy_from_slice(&(u32::MAX / 2).to_le_bytes());
    let xlsx = fixture("book.xlsx");
    let truncated_xlsx = xlsx[..xlsx.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "data.parquet",
            b"a,b\n1,2\n".to_vec(),
            "content_mismatch",
            "not Parquet",
        ),
        ("data.xlsx", parquet.clone(), "content_mismatch", "it is a Parquet file"),
        ("data.xls", xlsx.clone(), "content_mismatch", "not an xls workbook"),
        ("data.ods", fixture("regions.xls"), "content_mismatch", "OLE"),
        (
            "data.arrow",
            fixture("records.json"),
            "content_mismatch",
            "not Arrow IPC",
        ),
        ("data.json", b"id,name\n1,x\n".to_vec(), "content_mismatch", "not JSON"),
        ("data.jsonl", b"[1, 2]\n".to_vec(), "content_mismatch", "not JSON lines"),
        ("data.feather", parquet.clone(), "content_mismatch", "Parquet"),
        (
            "data.parquet",
            truncated_parquet,
            "unreadable_file",
            "does not end with PAR1",
        ),
        ("data.parquet", bad_footer, "unreadable_file", "Parquet file is damaged"),
        (
            "data.parquet",
            fixture("encrypted.parquet"),
            "encrypted_file",
            "encrypted",
        ),
        ("data.xlsx", fixture("encrypted.xlsx"), "encrypted_file", "password"),
        ("data.xlsx", truncated_xlsx, "unreadable_file", "workbook is damaged"),
        (
            "data.json",
            b"[{\"a\": 1}, {\"a\": ".to_vec(),
            "unreadable_file",
            "not valid JSON",
        ),
        (
            "data.jsonl",
            b"{\"a\": 1}\n{\"a\": 2\n".to_vec(),
            "unreadable_file",
            "line 2",
        ),
        ("data.parquet", Vec::new(), "content_mismatch", "empty"),
    ];
    for (filename, bytes, code, words) in cases {
        let (status, body) = server.upload(1, "bad", &new_session(), filename, bytes).await;
        assert_eq!(status, 422, "{filename}: {body}");
        assert_eq!(body["code"], code, "{filename}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(words), "{filename}: {detail}");
    }
    let (_, list) = server.get(1, "/files/").await;
    assert_eq!(list, serde_json::json!([]));
    assert!(server.stored_files().is_empty(), "{:?}", server.stored_files());
    // The name was never taken.
    let (status, _) = server.upload(1, "bad", &new_session(), "ok.parquet", parquet).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_workbook_without_data_is_422() {
    let server = TestServer::start().await;
    let path = format!("{}/tests/fixtures/formats/empty.xlsx", env!("CARGO_MANIFEST_DIR"));
    let (status, body) = server
        .upload(1, "e", &new_session(), "e.xlsx", std::fs::read(path).unwrap())
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "no_data");
    assert!(body["detail"].as_str().unwrap().contains("no data"), "{body}");
    assert!(server.stored_files().is_empty());
}

#[tokio::test]
async fn a_parquet_file_dropped_in_the_storage_folder_is_catalogued() {
    let server = TestServer::start().await;
    let bytes = fixture("typed.parquet");
    server.put_stored("1_dropped.parquet", bytes.clone());
    let record = eventually(20, "the dropped parquet", || async {
        let (status, body) = server.get(1, "/files/dropped").await;
        (status == 200).then_some(body)
    })
    .await;
    let (_, uploaded) = server.upload(1, "uploaded", &new_session(), "u.parquet", bytes).await;
    for field in ["summary", "sha256", "size_bytes", "row_count", "column_count", "format"] {
        assert_eq!(record[field], uploaded[field], "{field}");
    }
    let (_, profile) = server.get(1, "/files/dropped/profile").await;
    assert_like_pandas(&profile, &expected("typed.parquet"), "dropped typed.parquet");
    // A dropped file that is not what its extension says is left alone, not catalogued.
    server.put_stored("1_fake.parquet", b"a,b\n1,2\n".to_vec());
    server.put_stored("1_later.jsonl", fixture("lines.jsonl"));
    eventually(20, "the later file", || async {
        (server.get(1, "/files/later").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(server.get(1, "/files/fake").await.0, 404);
}

#[tokio::test]
async fn a_synced_workbook_arrives_whole_with_its_profile_and_sheets() {
    let edge = TestServer::start_on(Stack::Sqlite, None, None, &[]).await;
    let hub = TestServer::start().await;
    let bytes = fixture("book.xlsx");
    let (status, record) = edge.upload(7, "book", &new_session(), "book.xlsx", bytes.clone()).await;
    assert_eq!(status, 201, "{record}");
    let token = replicate_token();
    let report = edge
        .run_cli_json(
            &[
                "sync",
                "--to",
                hub.base.as_str(),
                "--token",
                token.as_str(),
                "--local",
                edge.base.as_str(),
                "--json",
            ],
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(report["pushed"]["applied"], 1, "{report}");
    let (status, on_hub) = hub.get(7, "/files/book").await;
    assert_eq!(status, 200, "{on_hub}");
    for field in ["sha256", "size_bytes", "format", "summary", "row_count", "column_count"] {
        assert_eq!(on_hub[field], record[field], "{field}");
    }
    let (_, downloaded) = download(&hub, 7, "book").await;
    assert!(downloaded == bytes, "the workbook arrived changed");
    assert_eq!(
        hub.get(7, "/files/book/profile").await.1,
        edge.get(7, "/files/book/profile").await.1
    );
    let (status, preview) = hub.get(7, "/files/book/preview?sheet=Regions").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["rows"].as_array().unwrap().len(), 3);
}

/// Writes a Parquet file of `groups` row groups of `rows` rows with polars' own writer
/// (snappy): an int64 id, a float64 and an int32 of pseudo-random values, and a label from
/// 1,000. Returns the file's size.
fn write_big_parquet(path: &std::path::Path, groups: usize, rows: usize) -> u64 {
    use polars_arrow::array::{Array, PrimitiveArray, Utf8ViewArray};
    use polars_arrow::datatypes::{ArrowDataType, ArrowSchema, Field};
    use polars_arrow::record_batch::RecordBatchT;
    use polars_parquet::write::{
        CompressionOptions, Encoding, FileWriter, RowGroupIterator, StatisticsOptions, Version, WriteOptions,
    };
    use std::sync::Arc;

    let schema: ArrowSchema = [
        Field::new("id".into(), ArrowDataType::Int64, false),
        Field::new("value".into(), ArrowDataType::Float64, false),
        Field::new("qty".into(), ArrowDataType::Int32, false),
        Field::new("label".into(), ArrowDataType::Utf8View, false),
    ]
    .into_iter()
    .collect();
    let schema = Arc::new(schema);
    let labels: Vec<String> = (0..1000).map(|i| format!("label-{i:04}")).collect();
    let options = WriteOptions {
        statistics: StatisticsOptions::default(),
        version: Version::V2,
        compression: CompressionOptions::Snappy,
        data_page_size: None,
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let batches = (0..groups).map(|g| {
        let ids: Vec<i64> = (0..rows).map(|i| (g * rows + i) as i64).collect();
        let values: Vec<f64> = (0..rows).map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64).collect();
        let qty: Vec<i32> = (0..rows).map(|_| (next() % 1_000_000) as i32).collect();
        let label: Vec<&str> = (0..rows).map(|_| labels[(next() % 1000) as usize].as_str()).collect();
        let arrays: Vec<Box<dyn Array>> = vec![
            PrimitiveArray::from_vec(ids).boxed(),
            PrimitiveArray::from_vec(values).boxed(),
            PrimitiveArray::from_vec(qty).boxed(),
            Utf8ViewArray::from_slice_values(label).boxed(),
        ];
        Ok(RecordBatchT::new(rows, schema.clone(), arrays))
    });
    let encodings = vec![vec![Encoding::Plain]; 4].into();
    let row_groups = RowGroupIterator::try_new(batches, &schema, options, encodings).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = FileWriter::try_new(file, (*schema).clone(), options).unwrap();
    for group in row_groups {
        writer.write(rows as u64, group.unwrap()).unwrap();
    }
    writer.end(None).unwrap()
}

/// The server's peak resident memory so far (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_large_parquet_of_many_row_groups_is_analyzed_with_flat_memory() {
    // The upload's own memory: nothing made in the background after it (the table made
    // ahead holds batches of its own; see Performance, "Speed, round three").
    let server = TestServer::start_with(&[("QUERY_TABLES_AHEAD", "false")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.parquet");
    let (groups, rows) = (80, 100_000);
    let size = write_big_parquet(&path, groups, rows);
    let file = tokio::fs::File::open(&path).await.unwrap();
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let form = reqwest::multipart::Form::new()
        .text("file_name", "big")
        .text("session_id", new_session())
        .text("description", "many row groups")
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name("big.parquet"),
        );
    let (status, record) = server.upload_form(1, form).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["row_count"], (groups * rows) as u64);
    let (_, profile) = server.get(1, "/files/big/profile").await;
    assert_eq!(profile["chunks"], groups as u64);
    let id = column(&profile, "id");
    assert_eq!(id["max"], (groups * rows - 1) as u64);
    assert_eq!(column(&profile, "label")["unique_count"], 1000);
    assert_eq!(column(&profile, "qty")["dtype"], "int32");
    // Memory stays far below the file's size: one column chunk of one row group at a time.
    let peak = peak_rss_kib(server.pid());
    println!(
        "{} MB Parquet in {groups} row groups: server peak RSS {} MiB",
        size / 1_000_000,
        peak / 1024
    );
    assert!(size > 100_000_000, "the file is {size} bytes");
    assert!(
        peak < 150 * 1024,
        "server peak RSS {peak} KiB for a {size}-byte Parquet file"
    );
}
