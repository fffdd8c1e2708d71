//! Each stored file as something polars scans. Parquet and Arrow IPC files on the local
//! folder are scanned as they are stored. Every other file (CSV/TSV, JSON, workbooks, Arrow
//! streams, and anything in a bucket) is read once through the service's own readers, typed
//! as its profile says, into a Parquet copy kept in a cache folder: polars' CSV reader would
//! not see the table the summary describes (title and footer lines, Windows-1252 and UTF-16,
//! pandas' dtypes), and a columnar copy makes every later query much faster.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use polars::prelude::*;

use super::QueryError;
use crate::analysis::{Cell, Dtype, Profile};
use crate::formats::{self, Columnar, Format, FormatError};
use crate::storage::Content;

/// Bump when the way copies are made changes: old copies are then never read again
/// (and age out of the cache).
const COPY_VERSION: u32 = 1;

/// Rows per batch written to a copy (and per row group, with the writer's own cap).
const COPY_BATCH_ROWS: usize = 64 * 1024;

/// What polars reads a table from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    Parquet,
    Ipc,
}

/// A table ready to scan: a path polars opens, and the open file behind it. The path is
/// the open file's `/proc/self/fd` entry, so the bytes stay readable for the whole query
/// even if the stored file is renamed or deleted, or the copy evicted, meanwhile.
pub struct TableFile {
    pub kind: ScanKind,
    file: File,
    /// What the table's rows are: the content hash and how they were read. Equal identities
    /// mean equal tables, so what is derived from a table (a view's row positions, its row
    /// file) is kept under it; a rename keeps it, new content changes it.
    identity: String,
    /// The cache folder, where the table's row file is kept.
    cache: CacheFolder,
}

/// A cache folder and its bound in bytes.
#[derive(Clone)]
pub(super) struct CacheFolder {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Files being made in the folder, so two makers of one never race.
    pub makers: Arc<Makers>,
}

/// One lock per file being made: whoever wants a file that is being made waits for it
/// and then opens it, rather than making it a second time (a query arriving while the
/// copy is made ahead of it, or two first queries of one file).
#[derive(Default)]
pub(super) struct Makers(Mutex<std::collections::HashMap<PathBuf, Arc<Mutex<()>>>>);

impl Makers {
    /// Runs `make` holding the lock of `path`: `make` must first look whether the file
    /// exists by now.
    pub(super) fn one_at_a_time<T>(&self, path: &Path, make: impl FnOnce() -> T) -> T {
        let gate = {
            let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
            gates.entry(path.to_path_buf()).or_default().clone()
        };
        let answer = {
            let _held = gate.lock().unwrap_or_else(|e| e.into_inner());
            make()
        };
        let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The map's own and ours: nobody else waits, the entry can go.
        if Arc::strong_count(&gate) <= 2 {
            gates.remove(path);
        }
        answer
    }
}

impl TableFile {
    fn open(kind: ScanKind, file: File, identity: String, cache: CacheFolder) -> TableFile {
        TableFile {
            kind,
            file,
            identity,
            cache,
        }
    }

    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }

    /// A table of `file` (Parquet) known as `identity`, with `dir` as its cache folder.
    #[cfg(test)]
    pub(super) fn for_test(file: File, identity: &str, dir: &Path) -> TableFile {
        let cache = CacheFolder {
            dir: dir.to_path_buf(),
            max_bytes: u64::MAX,
            makers: Arc::default(),
        };
        TableFile::open(ScanKind::Parquet, file, identity.into(), cache)
    }

    pub(super) fn identity(&self) -> &str {
        &self.identity
    }

    pub(super) fn cache(&self) -> &CacheFolder {
        &self.cache
    }
}

/// The cache folder of columnar copies, bounded in bytes (least recently used go first).
pub struct ColumnarCache {
    folder: CacheFolder,
}

impl ColumnarCache {
    pub fn new(dir: PathBuf, max_bytes: u64) -> std::io::Result<ColumnarCache> {
        std::fs::create_dir_all(&dir)?;
        remove_abandoned(&dir);
        Ok(ColumnarCache {
            folder: CacheFolder {
                dir,
                max_bytes,
                makers: Arc::default(),
            },
        })
    }

    pub fn dir(&self) -> &Path {
        &self.folder.dir
    }

    /// The table of a stored file: `content` is its open bytes, `format` and `profile` what
    /// the catalog says of it, `sha256` its content hash (the copy's key).
    pub fn prepare(
        &self,
        format: Format,
        profile: &Profile,
        sha256: &str,
        content: Content,
    ) -> Result<TableFile, QueryError> {
        let columnar = format.columnar();
        let folder = self.folder.clone();
        if let (Some(layout), Content::File(file)) = (columnar, &content) {
            if format.scans_as_stored(file).map_err(unreadable)? {
                let identity = format!("{sha256}.{}.stored", format.key());
                return Ok(TableFile::open(
                    scan_kind(layout),
                    file.try_clone().map_err(io)?,
                    identity,
                    folder,
                ));
            }
        }
        let layout = columnar.unwrap_or(Columnar::Parquet);
        let identity = format!("{sha256}.{}.v{COPY_VERSION}", format.key());
        let key = format!("{identity}.{}", extension(layout));
        let path = folder.dir.join(&key);
        if let Some(file) = open_kept(&path) {
            return Ok(TableFile::open(scan_kind(layout), file, identity, folder));
        }
        let made = folder.makers.one_at_a_time(&path, || -> Result<File, QueryError> {
            if let Some(file) = open_kept(&path) {
                return Ok(file);
            }
            make_copy(&folder, &path, format, profile, content)
        })?;
        Ok(TableFile::open(scan_kind(layout), made, identity, folder))
    }
}

/// Files being made are written continually; one untouched for this long was left by a
/// process that stopped while making it.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes what a stopped process left half made in the cache folder (another process may
/// share the folder and be making a file right now, so only old ones go).
fn remove_abandoned(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let abandoned = entry.file_name().to_string_lossy().starts_with(".building-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ABANDONED_AFTER);
        if abandoned {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A kept file of the cache folder, marked recently used (evicted last).
pub(super) fn open_kept(path: &Path) -> Option<File> {
    let file = File::open(path).ok()?;
    let _ = file.set_modified(std::time::SystemTime::now());
    Some(file)
}

/// Makes the columnar copy of `content` at `path` (through a temporary file, so a copy is
/// there whole or not at all).
fn make_copy(folder: &CacheFolder, path: &Path, format: Format, profile: &Profile, content: Content) -> Result<File, QueryError> {
    let source = content
        .into_file()
        .map_err(|e| QueryError::Internal(anyhow::anyhow!("{e}")))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".building-")
        .tempfile_in(&folder.dir)
        .map_err(io)?;
    match format.columnar() {
        // As stored (a bucket's object, or an Arrow stream made into a file).
        Some(_) => format
            .write_columnar(&source, temp.as_file_mut())
            .map_err(|e| match e {
                FormatError::Io(e) => io(e),
                other => unreadable(other),
            })?,
        None => write_copy(&source, format, profile, temp.as_file_mut())?,
    }
    temp.as_file_mut().flush().map_err(io)?;
    let file = temp.persist(path).map_err(|e| io(e.error))?;
    folder.evict(path);
    Ok(file)
}

impl CacheFolder {
    /// Removes the least recently used files while the folder is over its bound (never
    /// `keep`, the one just made). Files being read stay readable: readers hold them open.
    pub(super) fn evict(&self, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut copies: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                let name = e.file_name();
                let building = name.to_string_lossy().starts_with(".building-");
                if meta.is_file() && !building {
                    Some((meta.modified().ok()?, meta.len(), e.path()))
                } else {
                    None
                }
            })
            .collect();
        let mut total: u64 = copies.iter().map(|c| c.1).sum();
        copies.sort();
        for (_, len, path) in copies {
            if total <= self.max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

fn scan_kind(layout: Columnar) -> ScanKind {
    match layout {
        Columnar::Parquet => ScanKind::Parquet,
        Columnar::Ipc => ScanKind::Ipc,
    }
}

fn extension(layout: Columnar) -> &'static str {
    match layout {
        Columnar::Parquet => "parquet",
        Columnar::Ipc => "arrow",
    }
}

fn io(e: std::io::Error) -> QueryError {
    QueryError::Internal(anyhow::Error::new(e).context("writing a columnar copy"))
}

fn copy_failed(e: PolarsError) -> QueryError {
    QueryError::Internal(anyhow::Error::new(e).context("writing a columnar copy"))
}

fn unreadable(e: FormatError) -> QueryError {
    QueryError::Unreadable(format!("the file cannot be read as its table: {e}"))
}

/// One column of the copy being written, a batch at a time.
enum Builder {
    Int(PrimitiveChunkedBuilder<Int64Type>),
    UInt(PrimitiveChunkedBuilder<UInt64Type>),
    Float(PrimitiveChunkedBuilder<Float64Type>),
    Bool(BooleanChunkedBuilder),
    Time(PrimitiveChunkedBuilder<Int64Type>),
    Text(StringChunkedBuilder),
}

impl Builder {
    fn new(name: &str, dtype: &DataType) -> Builder {
        let name = PlSmallStr::from_str(name);
        let n = COPY_BATCH_ROWS;
        match dtype {
            DataType::Int64 => Builder::Int(PrimitiveChunkedBuilder::new(name, n)),
            DataType::UInt64 => Builder::UInt(PrimitiveChunkedBuilder::new(name, n)),
            DataType::Float64 => Builder::Float(PrimitiveChunkedBuilder::new(name, n)),
            DataType::Boolean => Builder::Bool(BooleanChunkedBuilder::new(name, n)),
            DataType::Datetime(..) => Builder::Time(PrimitiveChunkedBuilder::new(name, n)),
            _ => Builder::Text(StringChunkedBuilder::new(name, n)),
        }
    }

    fn push(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (Builder::Int(b), Cell::Int(i)) => b.append_value(*i),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::UInt(b), Cell::UInt(u)) => b.append_value(*u),
            (Builder::UInt(b), Cell::Int(i)) if *i >= 0 => b.append_value(*i as u64),
            (Builder::UInt(b), _) => b.append_null(),
            (Builder::Float(b), Cell::Float(x)) => b.append_value(*x),
            (Builder::Float(b), Cell::Int(i)) => b.append_value(*i as f64),
            (Builder::Float(b), Cell::UInt(u)) => b.append_value(*u as f64),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Time(b), Cell::Time { ns, .. }) => b.append_value(*ns),
            (Builder::Time(b), _) => b.append_null(),
            (Builder::Text(b), Cell::Text(t)) => b.append_value(String::from_utf8_lossy(t)),
            (Builder::Text(b), Cell::Null) => b.append_null(),
            (Builder::Text(b), other) => b.append_value(other.text().unwrap_or_default()),
        }
    }

    /// The batch so far as a column; the builder starts again empty.
    fn take(&mut self, name: &str, dtype: &DataType) -> PolarsResult<Column> {
        let fresh = Builder::new(name, dtype);
        let series = match std::mem::replace(self, fresh) {
            Builder::Int(b) => b.finish().into_series(),
            Builder::UInt(b) => b.finish().into_series(),
            Builder::Float(b) => b.finish().into_series(),
            Builder::Bool(b) => b.finish().into_series(),
            Builder::Time(b) => b.finish().into_series().cast(dtype)?,
            Builder::Text(b) => b.finish().into_series(),
        };
        Ok(series.into_column())
    }
}

/// Writes the typed rows of `source` (as `profile` describes them) to `out` as Parquet.
fn write_copy(source: &File, format: Format, profile: &Profile, out: &mut File) -> Result<(), QueryError> {
    let names: Vec<&str> = profile.columns.iter().map(|c| c.name.as_str()).collect();
    let dtypes: Vec<DataType> = profile
        .columns
        .iter()
        .map(|c| Dtype::of(&c.dtype).polars_type())
        .collect();
    let schema: Schema = names
        .iter()
        .zip(&dtypes)
        .map(|(n, d)| Field::new(PlSmallStr::from_str(n), d.clone()))
        .collect();
    let mut writer = ParquetWriter::new(&mut *out)
        .with_compression(ParquetCompression::Lz4Raw)
        .batched(&schema)
        .map_err(copy_failed)?;
    let mut builders: Vec<Builder> = names.iter().zip(&dtypes).map(|(n, d)| Builder::new(n, d)).collect();
    let mut pending = 0usize;
    let mut failed: Option<PolarsError> = None;
    let mut flush = |builders: &mut Vec<Builder>, rows: usize| -> PolarsResult<()> {
        let columns = builders
            .iter_mut()
            .zip(names.iter().zip(&dtypes))
            .map(|(b, (n, d))| b.take(n, d))
            .collect::<PolarsResult<Vec<Column>>>()?;
        writer.write_batch(&DataFrame::new(rows, columns)?)
    };
    let read = formats::read_rows(source, format, profile, &mut |cells| {
        for (b, cell) in builders.iter_mut().zip(cells) {
            b.push(cell);
        }
        pending += 1;
        if pending == COPY_BATCH_ROWS {
            if let Err(e) = flush(&mut builders, pending) {
                failed = Some(e);
                return false;
            }
            pending = 0;
        }
        true
    });
    if let Some(e) = failed {
        return Err(copy_failed(e));
    }
    read.map_err(unreadable)?;
    if pending > 0 || profile.row_count == 0 {
        flush(&mut builders, pending).map_err(copy_failed)?;
    }
    drop(flush);
    writer.finish().map_err(copy_failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_file_being_made_is_made_once_for_everyone_who_wants_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table");
        let makers = Makers::default();
        let made = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    makers.one_at_a_time(&path, || {
                        if path.exists() {
                            return;
                        }
                        made.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        std::fs::write(&path, b"made").unwrap();
                    })
                });
            }
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(makers.0.lock().unwrap().is_empty(), "no lock is kept once nobody waits");
    }

    #[test]
    fn half_made_files_a_stopped_process_left_are_removed_at_start_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".building-old");
        let recent = dir.path().join(".building-recent");
        let kept = dir.path().join("abc.csv.v1.parquet");
        for path in [&old, &recent, &kept] {
            std::fs::write(path, b"x").unwrap();
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for path in [&old, &kept] {
            File::options().write(true).open(path).unwrap().set_modified(two_hours_ago).unwrap();
        }
        ColumnarCache::new(dir.path().to_path_buf(), u64::MAX).unwrap();
        assert!(!old.exists());
        assert!(recent.exists() && kept.exists());
    }
}
