//! The csv-spectrum corpus (../shared/data): every file uploads with the right row and column counts.

use std::path::PathBuf;

use crate::harness::{new_session, TestServer};

fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/csv-spectrum");
    assert!(
        dir.is_dir(),
        "test data missing: {} (the repo expects ../shared beside it)",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn csv_spectrum_row_and_column_counts() {
    let server = TestServer::start().await;
    let session = new_session();
    let mut checked = 0;
    for entry in std::fs::read_dir(corpus().join("csvs")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(corpus().join("json").join(format!("{stem}.json"))).unwrap())
                .unwrap();
        // Most files list their rows; a one-row file may be the row object itself.
        let expected = match json {
            serde_json::Value::Array(rows) => rows,
            row @ serde_json::Value::Object(_) => vec![row],
            other => panic!("{stem}.json: unexpected {other}"),
        };
        let columns = expected
            .first()
            .and_then(|row| row.as_object())
            .map(|row| row.len())
            .expect("every corpus file has rows");
        let (status, body) = server
            .upload(
                1,
                &stem,
                &session,
                &format!("{stem}.csv"),
                std::fs::read(&path).unwrap(),
            )
            .await;
        assert_eq!(status, 201, "{stem}: {body}");
        assert_eq!(body["row_count"], expected.len(), "{stem}: {}", body["summary"]);
        assert_eq!(body["column_count"], columns, "{stem}: {}", body["summary"]);
        let summary = body["summary"].as_str().unwrap();
        for name in expected[0].as_object().unwrap().keys() {
            assert!(
                summary.contains(&format!("- **{name}**: `")),
                "{stem}: column {name:?} missing from\n{summary}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}
