//! A table's rows by position: an Arrow IPC file of the whole table in small record
//! batches, kept in the cache folder beside the columnar copy, from which a page of a sorted
//! or filtered view reads only the batches that hold its rows.
//!
//! The columnar copy is laid out for scans (row groups of 64k rows, compressed): a page
//! whose rows are spread over the whole table would decode nearly all of it. Here a row
//! costs one small batch read, wherever it is.

use std::fs::File;
use std::io::BufReader;
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use polars_arrow::io::ipc::read::{read_file_metadata, FileReader};
use polars_arrow::io::ipc::write::{Compression, FileWriter, WriteOptions};

use super::run::{engine_error, run, scan};
use super::tables::open_kept;
use super::{Cancel, QueryError, Table};

/// Rows per record batch: a page of scattered rows reads about this many rows per row it shows.
const BATCH_ROWS: usize = 1024;

/// Bump when the layout changes: old row files are then never read again.
const ROW_FILE_VERSION: u32 = 1;

/// Rows at `positions` (row numbers of the table, any order, repeats allowed) of `table`, in
/// that order, all columns; `schema` is the table's (as its scan has it).
pub(super) fn gather(
    table: &Table,
    schema: &Schema,
    positions: &[IdxSize],
    cancel: &Cancel,
) -> Result<DataFrame, QueryError> {
    if positions.is_empty() {
        return Ok(DataFrame::empty_with_schema(schema));
    }
    let file = open_or_build(table, cancel)?;
    if cancel.is_cancelled() {
        return Err(QueryError::Cancelled);
    }
    let metadata = read_file_metadata(&mut BufReader::new(&file)).map_err(internal)?;
    let blocks = metadata.blocks.len();
    let mut reader = FileReader::new(BufReader::new(file), metadata, None, None);
    // The positions by batch, each batch read once, in file order, and only its rows asked
    // for kept (a page holds at most one batch at a time besides its own rows).
    let mut by_batch: Vec<(usize, IdxSize, usize)> = positions
        .iter()
        .enumerate()
        .map(|(i, &p)| (p as usize / BATCH_ROWS, (p as usize % BATCH_ROWS) as IdxSize, i))
        .collect();
    by_batch.sort_unstable();
    let mut picked: Option<DataFrame> = None;
    // Where each asked row landed among the picked ones.
    let mut landed = vec![0 as IdxSize; positions.len()];
    let mut next = 0usize;
    for group in by_batch.chunk_by(|a, b| a.0 == b.0) {
        let block = group[0].0;
        if block >= blocks {
            return Err(internal(PolarsError::OutOfBounds(
                format!("row {} is past the row file's end", block * BATCH_ROWS).into(),
            )));
        }
        reader.set_current_block(block);
        let batch = reader
            .next()
            .ok_or_else(|| internal(PolarsError::NoData("a batch of the row file is missing".into())))?
            .map_err(internal)?;
        let rows = IdxCa::from_vec(PlSmallStr::EMPTY, group.iter().map(|g| g.1).collect());
        let rows = DataFrame::from(batch).take(&rows).map_err(internal)?;
        for g in group {
            landed[g.2] = next as IdxSize;
            next += 1;
        }
        match picked.as_mut() {
            Some(all) => {
                all.vstack_mut_owned(rows).map_err(internal)?;
            }
            None => picked = Some(rows),
        }
    }
    let Some(picked) = picked else {
        return Ok(DataFrame::empty_with_schema(schema));
    };
    let at = IdxCa::from_vec(PlSmallStr::EMPTY, landed);
    let rows = picked.take(&at).map_err(internal)?;
    if rows.schema().as_ref() != schema {
        return Err(internal(PolarsError::SchemaMismatch(
            format!("the row file has {:?}, the table {schema:?}", rows.schema()).into(),
        )));
    }
    Ok(rows)
}

/// The table's row file, made first if the cache folder has none.
fn open_or_build(table: &Table, cancel: &Cancel) -> Result<File, QueryError> {
    let cache = table.file.cache();
    let path = cache
        .dir
        .join(format!("{}.rows-v{ROW_FILE_VERSION}.arrow", table.file.identity()));
    if let Some(file) = open_kept(&path) {
        return Ok(file);
    }
    cache.makers.one_at_a_time(&path, || {
        if let Some(file) = open_kept(&path) {
            return Ok(file);
        }
        let temp = tempfile::Builder::new()
            .prefix(".building-")
            .tempfile_in(&cache.dir)
            .map_err(io)?;
        write(table, temp.as_file().try_clone().map_err(io)?, cancel)?;
        let file = temp.persist(&path).map_err(|e| io(e.error))?;
        cache.evict(&path);
        Ok(file)
    })
}

/// Makes the table's row file now if the cache folder has none, so the first page of a
/// filtered or sorted view finds it.
pub fn prepare(table: &Table, cancel: &Cancel) -> Result<(), QueryError> {
    open_or_build(table, cancel).map(drop)
}

/// Writes every row of `table` to `out` in batches of exactly [`BATCH_ROWS`] rows (the
/// last one shorter), so row `n` is in batch `n / BATCH_ROWS`.
fn write(table: &Table, out: File, cancel: &Cancel) -> Result<(), QueryError> {
    let mut plan = scan(table).map_err(|e| engine_error(e, cancel))?;
    let schema = plan.collect_schema().map_err(|e| engine_error(e, cancel))?;
    let arrow = schema.to_arrow(CompatLevel::newest());
    let writer = FileWriter::try_new(
        std::io::BufWriter::new(out),
        Arc::new(arrow),
        None,
        WriteOptions {
            compression: Some(Compression::LZ4),
        },
    )
    .map_err(internal)?;
    struct State {
        writer: FileWriter<std::io::BufWriter<File>>,
        pending: Option<DataFrame>,
        written: bool,
    }
    fn emit(writer: &mut FileWriter<std::io::BufWriter<File>>, frame: &DataFrame) -> PolarsResult<()> {
        let mut frame = frame.clone();
        frame.rechunk_mut();
        for chunk in frame.iter_chunks(CompatLevel::newest(), true) {
            writer.write(&chunk, None)?;
        }
        Ok(())
    }
    let state = Arc::new(Mutex::new(State {
        writer,
        pending: None,
        written: false,
    }));
    let shared = state.clone();
    let restart = state.clone();
    let lost = || PolarsError::ComputeError("the row file's writer was lost".into());
    run(
        plan,
        cancel,
        move |batch| {
            let mut state = shared.lock().map_err(|_| lost())?;
            let mut pending = match state.pending.take() {
                Some(mut p) => {
                    p.vstack_mut(&batch)?;
                    p
                }
                None => batch,
            };
            while pending.height() >= BATCH_ROWS {
                let head = pending.slice(0, BATCH_ROWS);
                emit(&mut state.writer, &head)?;
                state.written = true;
                pending = pending.slice(BATCH_ROWS as i64, usize::MAX);
            }
            state.pending = Some(pending);
            Ok(true)
        },
        // Interrupted for another query: it can start again only if nothing was written.
        &|| {
            restart
                .lock()
                .map(|mut s| {
                    s.pending = None;
                    !s.written
                })
                .unwrap_or(false)
        },
    )?;
    let mut state = state.lock().map_err(|_| internal(lost()))?;
    if let Some(rest) = state.pending.take().filter(|p| p.height() > 0) {
        emit(&mut state.writer, &rest).map_err(internal)?;
    }
    // Also flushes the buffer.
    state.writer.finish().map_err(internal)?;
    Ok(())
}

fn internal(e: PolarsError) -> QueryError {
    QueryError::Internal(anyhow::Error::new(e).context("reading or writing a table's row file"))
}

fn io(e: std::io::Error) -> QueryError {
    QueryError::Internal(anyhow::Error::new(e).context("writing a table's row file"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::TableFile;

    #[test]
    fn rows_come_back_by_position_across_batches_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * BATCH_ROWS as i64 + 7;
        let mut frame = polars::df! {
            "id" => (0..n).collect::<Vec<i64>>(),
            "text" => (0..n).map(|i| (i % 5 != 0).then(|| format!("row {i}"))).collect::<Vec<_>>(),
        }
        .unwrap();
        let path = dir.path().join("t.parquet");
        ParquetWriter::new(File::create(&path).unwrap())
            .with_row_group_size(Some(500))
            .finish(&mut frame)
            .unwrap();
        let table = Table {
            name: "data".into(),
            file: TableFile::for_test(File::open(&path).unwrap(), "t", dir.path()),
        };
        let schema = frame.schema().as_ref().clone();
        let want: Vec<IdxSize> = vec![(n - 1) as IdxSize, 0, 1024, 1023, 2048, 5, 5, 3071, 3072];
        let got = gather(&table, &schema, &want, &Cancel::default()).unwrap();
        let ids: Vec<i64> = got.column("id").unwrap().i64().unwrap().into_no_null_iter().collect();
        assert_eq!(ids, want.iter().map(|&p| p as i64).collect::<Vec<_>>());
        assert_eq!(got.column("text").unwrap().str().unwrap().get(6), None);
        assert_eq!(got.column("text").unwrap().str().unwrap().get(2), Some("row 1024"));
        // Made once, then read again from the cache folder.
        assert!(dir.path().join("t.rows-v1.arrow").exists());
        let again = gather(&table, &schema, &want[..2], &Cancel::default()).unwrap();
        assert_eq!(again.height(), 2);
        assert_eq!(gather(&table, &schema, &[], &Cancel::default()).unwrap().height(), 0);
    }
}
