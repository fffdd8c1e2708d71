//! Parquet files through polars' Parquet reader, one row group and one column at a time, so
//! memory holds one column chunk whatever the file's size.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use polars_arrow::array::Array;
use polars_arrow::datatypes::ArrowSchema;
use polars_parquet::read::{
    column_iter_to_arrays, infer_schema, read_metadata, BasicDecompressor, FileMetadata, PageReader, RowGroupMetadata,
};

use super::columnar::{PandasMeta, PreviewRows, TableStats};
use super::{mismatch, read_as_stored, Columnar, FileFormat, FormatError, PreviewOptions};
use crate::analysis::{Cell, Preview, Profile};

/// Parquet files, which the query engine scans as they are stored.
pub(super) struct Parquet;

const ENCRYPTED: &str = "the Parquet file is encrypted (its footer is); it cannot be read without the key";

impl FileFormat for Parquet {
    fn extensions(&self) -> &'static [&'static str] {
        &["parquet"]
    }

    fn key(&self) -> &'static str {
        "parquet"
    }

    fn name(&self) -> &'static str {
        "Parquet"
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.apache.parquet"
    }

    /// A Parquet file starts and ends with PAR1; the encrypted-footer layout with PARE.
    fn check_content(&self, head: &[u8], file: &File) -> Result<(), FormatError> {
        if head.starts_with(b"PARE") {
            return Err(FormatError::Encrypted(ENCRYPTED.into()));
        }
        if !head.starts_with(b"PAR1") {
            return Err(mismatch(self, "a Parquet file starts with PAR1", head));
        }
        let mut file = super::rewound(file)?;
        if file.metadata()?.len() < 12 {
            return Err(FormatError::Corrupt("the Parquet file is truncated (no footer)".into()));
        }
        let mut tail = [0u8; 4];
        file.seek(SeekFrom::End(-4))?;
        file.read_exact(&mut tail)?;
        match &tail {
            b"PAR1" => Ok(()),
            b"PARE" => Err(FormatError::Encrypted(ENCRYPTED.into())),
            _ => Err(FormatError::Corrupt(
                "the Parquet file is truncated or damaged: it does not end with PAR1".into(),
            )),
        }
    }

    fn profile(&self, file: &File) -> Result<Profile, FormatError> {
        profile(file)
    }

    fn preview(&self, file: &File, options: &PreviewOptions<'_>) -> Result<Preview, FormatError> {
        preview(file, options.rows)
    }

    fn read_rows(&self, _: &File, _: &Profile, _: &mut dyn FnMut(&[Cell<'_>]) -> bool) -> Result<u64, FormatError> {
        Err(read_as_stored(self))
    }

    fn columnar(&self) -> Option<Columnar> {
        Some(Columnar::Parquet)
    }

    fn scans_as_stored(&self, _file: &File) -> Result<bool, FormatError> {
        Ok(true)
    }

    /// The bytes as they are (a bucket's object, kept as a local copy).
    fn write_columnar(&self, file: &File, out: &mut File) -> Result<(), FormatError> {
        std::io::copy(&mut super::rewound(file)?, out)?;
        Ok(())
    }
}

/// The file's metadata (its footer) and the Arrow schema polars reads it with.
fn open(file: &File) -> Result<(File, FileMetadata, ArrowSchema), FormatError> {
    let mut file = super::rewound(file)?;
    let metadata = read_metadata(&mut file).map_err(|e| corrupt(&e))?;
    let schema = infer_schema(&metadata).map_err(|e| corrupt(&e))?;
    Ok((file, metadata, schema))
}

/// The `pandas` entry of the file's key-value metadata, if pandas (or pyarrow from pandas) wrote one.
fn pandas_meta(metadata: &FileMetadata) -> PandasMeta {
    let entry = metadata
        .key_value_metadata()
        .iter()
        .flatten()
        .find(|kv| kv.key == "pandas")
        .and_then(|kv| kv.value.as_deref());
    PandasMeta::parse(entry)
}

fn corrupt(e: &dyn std::fmt::Display) -> FormatError {
    FormatError::Corrupt(format!("the Parquet file is damaged or not readable: {e}"))
}

/// Reads one column of one row group: its column chunks' bytes, then polars' decoder.
fn read_column(
    file: &File,
    size: u64,
    group: &RowGroupMetadata,
    name: &str,
    field: &polars_arrow::datatypes::Field,
) -> Result<Option<Vec<Box<dyn Array>>>, FormatError> {
    let Some(chunks) = group.columns_under_root_iter(name) else {
        return Ok(None);
    };
    let mut pages = Vec::new();
    let mut types = Vec::new();
    for meta in chunks {
        let range = meta.byte_range();
        if range.end > size || range.start > range.end {
            return Err(corrupt(&format!("column {name:?} points past the end of the file")));
        }
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        // Positioned reads: threads share the file.
        file.read_exact_at(&mut bytes, range.start)?;
        let reader = PageReader::new(Cursor::new(bytes.into()), meta, Vec::new(), usize::MAX);
        pages.push(BasicDecompressor::new(reader, Vec::new()));
        types.push(&meta.descriptor().descriptor.primitive_type);
    }
    let (arrays, _) = column_iter_to_arrays(pages, types, field.clone(), None).map_err(|e| corrupt(&e))?;
    Ok(Some(arrays))
}

/// Threads that decode and profile columns at once, at most: the analysis of one file
/// may use the cores of a small machine, no more.
const PROFILE_THREADS: usize = 4;

/// The profile of the whole file, its columns on threads of their own (columns are
/// independent); a thread holds one column chunk of one row group at a time.
fn profile(file: &File) -> Result<Profile, FormatError> {
    let (file, metadata, schema) = open(file)?;
    let size = file.metadata()?.len();
    let fields: Vec<_> = schema.iter().collect();
    let mut table = TableStats::new(&schema, pandas_meta(&metadata));
    let fills = table.column_fills();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(PROFILE_THREADS)
        .min(fills.len())
        .max(1);
    // Each thread takes the next column not yet taken, so a costly column does not hold
    // up columns waiting behind it.
    let waiting = std::sync::Mutex::new(fills.into_iter());
    let fill_columns = || -> Result<(), FormatError> {
        loop {
            let next = waiting.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some(mut fill) = next else { return Ok(()) };
            let (name, field) = fields[fill.index];
            for group in &metadata.row_groups {
                match read_column(&file, size, group, name, field)? {
                    Some(arrays) => arrays.iter().for_each(|array| fill.push(array.as_ref())),
                    None => fill.missing(group.num_rows() as u64),
                }
            }
        }
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(fill_columns)).collect();
        let mut result = fill_columns();
        for helper in helpers {
            let joined = helper
                .join()
                .unwrap_or_else(|_| Err(FormatError::Corrupt("profiling a column panicked".into())));
            result = result.and(joined);
        }
        result
    })?;
    let rows = metadata.row_groups.iter().map(|g| g.num_rows() as u64).sum();
    table.rows_done(rows);
    Ok(table.finish(metadata.row_groups.len() as u64))
}

fn preview(file: &File, rows: usize) -> Result<Preview, FormatError> {
    let (file, metadata, schema) = open(file)?;
    let size = file.metadata()?.len();
    let mut preview = PreviewRows::new(&schema, &pandas_meta(&metadata), rows);
    for group in &metadata.row_groups {
        if preview.is_full() {
            break;
        }
        let mut columns = Vec::with_capacity(schema.len());
        for (name, field) in schema.iter() {
            let array = match read_column(&file, size, group, name, field)? {
                Some(arrays) => concat(arrays, field, group.num_rows()),
                None => polars_arrow::array::new_null_array(field.dtype.clone(), group.num_rows()),
            };
            columns.push(array);
        }
        preview.push(&columns);
    }
    Ok(preview.finish())
}

/// One array of a row group's column (polars may hand it over in pieces).
fn concat(mut arrays: Vec<Box<dyn Array>>, field: &polars_arrow::datatypes::Field, rows: usize) -> Box<dyn Array> {
    match arrays.len() {
        0 => polars_arrow::array::new_null_array(field.dtype.clone(), rows),
        1 => arrays.remove(0),
        _ => {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            polars_arrow::compute::concatenate::concatenate(&refs).unwrap_or_else(|_| arrays.remove(0))
        }
    }
}
