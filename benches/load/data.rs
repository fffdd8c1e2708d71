//! Generated CSV datasets (int, float, string, ISO date and date-time, bool; some empty
//! cells), written once into a cache folder and reused by later runs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Duration, NaiveDate};

/// Bump when the generator changes, so cached files from an older version are not reused.
const GENERATOR_VERSION: u32 = 1;

const HEADER: &str = "id,order_date,shipped_at,customer,city,product,quantity,unit_price,discount,is_member,rating\n";
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
    let day = rng.below(dates.days.len() as u64) as usize;
    write!(line, "{id},{},", dates.days[day])?;
    // shipped_at: an ISO date-time, missing for ~4% of rows (not shipped yet).
    if !rng.chance(4) {
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
    let customer = CUSTOMERS[rng.below(CUSTOMERS.len() as u64) as usize];
    write!(line, ",{customer}{},", rng.below(10_000))?;
    line.extend_from_slice(CITIES[rng.below(CITIES.len() as u64) as usize].as_bytes());
    write!(line, ",{},", PRODUCTS[rng.below(PRODUCTS.len() as u64) as usize])?;
    // quantity: integers with ~2% empty cells (pandas makes that float64).
    if !rng.chance(2) {
        write!(line, "{}", 1 + rng.below(500))?;
    }
    let cents = rng.below(1_000_000);
    write!(line, ",{}.{:02},", cents / 100, cents % 100)?;
    // discount: a float that is empty for ~30% of rows.
    if !rng.chance(30) {
        write!(line, "{:.3}", rng.below(500) as f64 / 1000.0)?;
    }
    let member = if rng.chance(50) { "true" } else { "false" };
    writeln!(line, ",{member},{}", rng.below(5) + 1)
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
        let mut z = self.0;
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
