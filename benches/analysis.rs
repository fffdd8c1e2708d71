//! Criterion bench for the analysis engine: profiles generated 10 MB and 200 MB mixed CSVs.
//!
//! The files (int, float, text, ISO date, bool, low-cardinality category, date-time, empty
//! cells, quoted commas) are written to a temp dir by the bench itself.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use file_service::analysis::{profile_path, Format};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

/// Writes a 10-column mixed CSV of at least `target_bytes` bytes; deterministic.
fn generate(path: &Path, target_bytes: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let header = "id,price,name,date,active,qty,category,updated_at,score,note\n";
    out.write_all(header.as_bytes())?;
    let mut written = header.len() as u64;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let categories = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    let mut line = String::with_capacity(256);
    let mut i: u64 = 0;
    while written < target_bytes {
        let r = next();
        line.clear();
        use std::fmt::Write as _;
        let qty = if r % 10 == 0 {
            String::new()
        } else {
            ((r >> 8) % 1000).to_string()
        };
        let score = if r % 17 == 0 {
            "NA".to_string()
        } else {
            format!("{:.4}", (r >> 20) as f64 / 1e12)
        };
        let note = if r % 5 == 0 {
            "\"quoted, with comma\""
        } else {
            "plain note"
        };
        let _ = writeln!(
            line,
            "{i},{}.{:02},name_{},{:04}-{:02}-{:02},{},{qty},{},{:04}-{:02}-{:02}T{:02}:{:02}:{:02},{score},{note}",
            (r >> 3) % 100_000,
            (r >> 5) % 100,
            (r >> 11) % 50_000,
            2000 + (r >> 13) % 25,
            1 + (r >> 17) % 12,
            1 + (r >> 19) % 28,
            if r & 1 == 0 { "True" } else { "False" },
            categories[((r >> 23) % categories.len() as u64) as usize],
            2000 + (r >> 29) % 25,
            1 + (r >> 31) % 12,
            1 + (r >> 33) % 28,
            (r >> 35) % 24,
            (r >> 37) % 60,
            (r >> 39) % 60,
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
    }
    out.flush()?;
    Ok(written)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("profile_path");
    group.sample_size(10);
    for (label, mb) in [("10MB", 10u64), ("200MB", 200u64)] {
        let path = dir.path().join(format!("mixed_{label}.csv"));
        let bytes = generate(&path, mb << 20).expect("generate csv");
        group.throughput(Throughput::Bytes(bytes));
        if mb >= 200 {
            group.measurement_time(Duration::from_secs(30));
        }
        group.bench_with_input(BenchmarkId::from_parameter(label), &path, |b, path| {
            b.iter(|| {
                let profile = profile_path(path, Format::Csv).expect("profile");
                assert_eq!(profile.column_count, 10);
                profile
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
