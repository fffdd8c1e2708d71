//! Generated CSV datasets shaped like real exports: a unique integer id and a unique text
//! reference, ISO dates and date-times, names of high and low cardinality, integers, floats,
//! booleans, free text with quoted commas and doubled quotes, and about 10% empty cells.
//! Written once into a cache folder and reused by later runs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};

/// Bump when the generator changes, so cached files from an older version are not reused.
/// Version 1 had no free text, a handful of empty cells and no unique text column: it read
/// almost three times faster than a real export of the same size.
const GENERATOR_VERSION: u32 = 2;

const HEADER: &str = "id,ref,order_date,shipped_at,customer,postcode,city,product,quantity,unit_price,discount,is_member,rating,comment\n";
const CUSTOMERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia",
    "peggy",
];
// Some cities need quoting: the parser's quoted path is exercised too.
const CITIES: &[&str] = &[
    "Paris",
    "Berlin",
    "\"Portland, OR\"",
    "Tokyo",
    "São Paulo",
    "Lagos",
    "\"Austin, TX\"",
    "Oslo",
];
const PRODUCTS: &[&str] = &[
    "apple", "pear", "fig", "kiwi", "mango", "plum", "grape", "lemon", "cherry", "melon",
];
/// Words of the free-text column (customer comments).
const WORDS: &[&str] = &[
    "great",
    "late",
    "box",
    "damaged",
    "fresh",
    "will",
    "order",
    "again",
    "thanks",
    "the",
    "delivery",
    "was",
    "slow",
    "fast",
    "very",
    "good",
    "bad",
    "price",
    "ok",
    "not",
    "as",
    "described",
    "friendly",
    "driver",
    "left",
    "at",
    "door",
    "missing",
    "one",
    "item",
    "refund",
    "please",
    "perfect",
    "ripe",
    "too",
    "small",
    "big",
    "sweet",
    "sour",
    "wrapped",
    "well",
    "cold",
    "warm",
    "quality",
    "service",
    "excellent",
    "poor",
    "arrived",
    "early",
    "broken",
];
/// Cells left empty in most columns, in percent (real exports have gaps everywhere).
const EMPTY_PERCENT: u64 = 10;

/// Path of the cached CSV of about `mb` × 10^6 bytes, generating it first if needed.
pub fn ensure_csv(cache: &Path, mb: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let path = cache.join(format!("load-v{GENERATOR_VERSION}-{mb}MB.csv"));
    let target = mb * 1_000_000;
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= target) {
        return Ok(path);
    }
    eprintln!(
        "load: generating {} ({mb} MB, once; cached for later runs)",
        path.display()
    );
    // Written under a temporary name and renamed, so an interrupted run leaves no short file.
    let partial = path.with_extension("csv.partial");
    write_csv(&partial, target)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// Writes rows until the file holds at least `target` bytes. Deterministic: the same
/// target always gives the same file.
fn write_csv(path: &Path, target: u64) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    out.write_all(HEADER.as_bytes())?;
    let dates = DateTable::new();
    let mut rng = SplitMix64(0x5eed_f11e);
    let mut written = HEADER.len() as u64;
    let mut line = Vec::with_capacity(256);
    let mut id = 0u64;
    while written < target {
        id += 1;
        line.clear();
        write_row(&mut line, id, &mut rng, &dates)?;
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    out.flush()
}

fn write_row(line: &mut Vec<u8>, id: u64, rng: &mut SplitMix64, dates: &DateTable) -> std::io::Result<()> {
    // ref: a unique text key (the 64-bit mix is a bijection), as order numbers or UUIDs are.
    write!(line, "{id},{:016x},", SplitMix64::mix(id))?;
    let day = rng.below(dates.days.len() as u64) as usize;
    if !rng.chance(EMPTY_PERCENT) {
        line.extend_from_slice(dates.days[day].as_bytes());
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        let secs = rng.below(86_400);
        write!(
            line,
            "{}T{:02}:{:02}:{:02}",
            dates.days[day],
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        let customer = CUSTOMERS[rng.below(CUSTOMERS.len() as u64) as usize];
        write!(line, "{customer}{}", rng.below(5_000))?;
    }
    line.push(b',');
    // postcode: tens of thousands of values, so the column is counted exactly to the end.
    if !rng.chance(EMPTY_PERCENT) {
        write!(line, "{}", 10_000 + rng.below(80_000))?;
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        line.extend_from_slice(CITIES[rng.below(CITIES.len() as u64) as usize].as_bytes());
    }
    write!(line, ",{},", PRODUCTS[rng.below(PRODUCTS.len() as u64) as usize])?;
    // quantity: integers with empty cells (pandas makes that float64).
    if !rng.chance(EMPTY_PERCENT) {
        write!(line, "{}", 1 + rng.below(500))?;
    }
    let cents = rng.below(1_000_000);
    write!(line, ",{}.{:02},", cents / 100, cents % 100)?;
    // discount: a float that is empty for ~30% of rows.
    if !rng.chance(30) {
        write!(line, "{:.3}", rng.below(500) as f64 / 1000.0)?;
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        line.extend_from_slice(if rng.chance(50) { &b"true"[..] } else { &b"false"[..] });
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        write!(line, "{}", rng.below(5) + 1)?;
    }
    line.push(b',');
    if !rng.chance(EMPTY_PERCENT) {
        write_comment(line, rng);
    }
    line.push(b'\n');
    Ok(())
}

/// Free text of 1 to 8 words; commas between clauses and a quoted word now and then make
/// most of it a quoted field (with doubled quotes inside), as a spreadsheet writes it.
fn write_comment(line: &mut Vec<u8>, rng: &mut SplitMix64) {
    let mut text = Vec::with_capacity(96);
    let words = 1 + rng.below(8);
    for w in 0..words {
        if w > 0 {
            text.extend_from_slice(if rng.chance(20) { &b", "[..] } else { &b" "[..] });
        }
        let word = WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes();
        if rng.chance(3) {
            text.push(b'"');
            text.extend_from_slice(word);
            text.push(b'"');
        } else {
            text.extend_from_slice(word);
        }
    }
    if text.iter().any(|b| matches!(b, b',' | b'"')) {
        line.push(b'"');
        for &b in &text {
            if b == b'"' {
                line.push(b'"');
            }
            line.push(b);
        }
        line.push(b'"');
    } else {
        line.extend_from_slice(&text);
    }
}

/// ISO dates of ten years, formatted once: formatting dates per row would dominate generation.
struct DateTable {
    days: Vec<String>,
}

impl DateTable {
    fn new() -> DateTable {
        let start = NaiveDate::from_ymd_opt(2015, 1, 1).expect("valid date");
        let days = (0..3653)
            .map(|d| (start + Duration::days(d)).format("%Y-%m-%d").to_string())
            .collect();
        DateTable { days }
    }
}

/// A tiny deterministic PRNG (SplitMix64); the data only needs to look varied.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        SplitMix64::mix(self.0)
    }

    /// SplitMix64's finalizer: a bijection of u64, so distinct inputs give distinct outputs.
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A tiny CSV for populating a user's file list.
pub fn tiny_csv(i: usize) -> String {
    format!(
        "id,name,amount,day\n{i},item{i},{}.5,2024-01-{:02}\n",
        i % 1000,
        i % 28 + 1
    )
}
