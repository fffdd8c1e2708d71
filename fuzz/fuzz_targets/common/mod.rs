//! The small table the query targets run over: a CSV made here, analyzed and copied to a
//! columnar file by the service's own code, as an uploaded file's table is.

use std::fmt::Write as _;
use std::sync::OnceLock;

use file_service::analysis::{self, profile_reader};
use file_service::formats::Format;
use file_service::query::{ColumnarCache, Table};
use file_service::storage::Content;

/// Rows of the table.
pub const ROWS: usize = 40;

/// The CSV: integers, numbers with gaps, text with quotes, commas and accents, dates,
/// booleans, an all-missing column and a column whose name needs quoting.
fn csv() -> String {
    let cities = ["Tokyo", "Paris", "São Paulo", "O'Hare", "a,b", ""];
    let mut text = String::from("id,price,city,ordered,paid,empty,\"unit price\"\n");
    for i in 0..ROWS {
        let price = if i % 7 == 3 { String::new() } else { format!("{}.{}", i * 3 % 17, i % 10) };
        let city = cities[i % cities.len()];
        let city = if city.contains(',') { format!("\"{city}\"") } else { city.to_string() };
        let _ = writeln!(
            text,
            "{i},{price},{city},2024-{:02}-{:02}T{:02}:30:00,{},,{}",
            i % 12 + 1,
            i % 28 + 1,
            i % 24,
            i % 3 == 0,
            (ROWS - i) % 9,
        );
    }
    text
}

/// The table, registered under `name` for SQL. Built once; its files are removed at once
/// (the table holds its copy open), so nothing is left behind when libFuzzer exits.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.csv");
        let text = csv();
        std::fs::write(&path, &text).expect("csv");
        let profile = profile_reader(text.as_bytes(), analysis::Format::Csv).expect("the table analyzes");
        let cache = ColumnarCache::new(dir.path().join("copies"), u64::MAX).expect("cache folder");
        let file = cache
            .prepare(
                Format::from_extension("csv").expect("csv format"),
                &profile,
                "fuzz-table",
                Content::File(std::fs::File::open(&path).expect("open csv")),
            )
            .expect("the columnar copy");
        Table {
            name: "t".into(),
            file,
        }
    })
}
