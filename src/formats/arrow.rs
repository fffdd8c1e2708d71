//! Arrow IPC files (`.arrow`, `.feather` v2, `.ipc`) and IPC streams through polars' Arrow
//! reader, one record batch at a time.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use polars_arrow::array::Array;
use polars_arrow::datatypes::ArrowSchema;
use polars_arrow::io::ipc::read::{read_file_metadata, read_stream_metadata, FileReader, StreamReader, StreamState};

use super::columnar::{PandasMeta, PreviewRows, TableStats};
use super::{mismatch, read_as_stored, rewound, Columnar, FileFormat, FormatError, PreviewOptions};
use crate::analysis::{Cell, Preview, Profile};

/// Arrow IPC files and streams; the query engine scans files as they are stored, and
/// streams once written as files.
pub(super) struct Arrow;

impl FileFormat for Arrow {
    fn extensions(&self) -> &'static [&'static str] {
        &["arrow", "feather", "ipc"]
    }

    fn key(&self) -> &'static str {
        "arrow"
    }

    fn name(&self) -> &'static str {
        "Arrow IPC"
    }

    fn content_type(&self) -> &'static str {
        "application/vnd.apache.arrow.file"
    }

    /// A file starts and ends with ARROW1; a stream starts with its schema message, with
    /// (or, from old writers, without) its marker.
    fn check_content(&self, head: &[u8], file: &File) -> Result<(), FormatError> {
        if head.starts_with(b"FEA1") {
            return Err(FormatError::Mismatch(
                "this is a Feather version 1 file, which is not supported; save it as Feather version 2 (Arrow IPC)"
                    .into(),
            ));
        }
        if head.starts_with(FILE_MAGIC) {
            let mut file = rewound(file)?;
            if file.metadata()?.len() < 12 {
                return Err(FormatError::Corrupt("the Arrow file is truncated".into()));
            }
            let mut tail = [0u8; 6];
            file.seek(SeekFrom::End(-6))?;
            file.read_exact(&mut tail)?;
            return if tail == FILE_MAGIC {
                Ok(())
            } else {
                Err(FormatError::Corrupt(
                    "the Arrow file is truncated or damaged: it does not end with ARROW1".into(),
                ))
            };
        }
        if head.starts_with(STREAM_MARKER) || (head.len() >= 8 && head[..4] != [0; 4] && head[3] == 0) {
            Ok(())
        } else {
            Err(mismatch(
                self,
                "an Arrow IPC file starts with ARROW1, a stream with its schema message",
                head,
            ))
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
        Some(Columnar::Ipc)
    }

    /// An IPC file is; a stream is not (polars scans files only).
    fn scans_as_stored(&self, file: &File) -> Result<bool, FormatError> {
        let mut head = [0u8; 6];
        Ok(rewound(file)?.read_exact(&mut head).is_ok() && head == FILE_MAGIC)
    }

    fn write_columnar(&self, file: &File, out: &mut File) -> Result<(), FormatError> {
        if self.scans_as_stored(file)? {
            std::io::copy(&mut rewound(file)?, out)?;
            Ok(())
        } else {
            stream_to_file(file, out)
        }
    }
}

/// The magic bytes an IPC file starts and ends with.
pub(super) const FILE_MAGIC: &[u8] = b"ARROW1";
/// An IPC stream's first message starts with this continuation marker (older writers omit it).
pub(super) const STREAM_MARKER: &[u8] = &[0xff, 0xff, 0xff, 0xff];

fn corrupt(e: &dyn std::fmt::Display) -> FormatError {
    FormatError::Corrupt(format!("the Arrow file is damaged or not readable: {e}"))
}

/// Reads the schema (`start` makes the reader's state from it), then each record batch in
/// turn until `on_batch` says stop. Returns the state and how many batches were read.
fn read_batches<S>(
    file: &File,
    start: impl FnOnce(&ArrowSchema, PandasMeta) -> S,
    mut on_batch: impl FnMut(&mut S, &[Box<dyn Array>]) -> bool,
) -> Result<(S, u64), FormatError> {
    let mut file = super::rewound(file)?;
    let mut head = [0u8; 6];
    let is_file = file.read_exact(&mut head).is_ok() && head == FILE_MAGIC;
    file.seek(SeekFrom::Start(0))?;
    let mut batches = 0u64;
    if is_file {
        let metadata = read_file_metadata(&mut file).map_err(|e| corrupt(&e))?;
        let pandas = metadata.custom_schema_metadata.as_ref().and_then(|m| m.get("pandas"));
        let mut state = start(&metadata.schema, PandasMeta::parse(pandas.map(|p| p.as_str())));
        for batch in FileReader::new(file, metadata, None, None) {
            let batch = batch.map_err(|e| corrupt(&e))?;
            batches += 1;
            if !on_batch(&mut state, batch.columns()) {
                break;
            }
        }
        Ok((state, batches))
    } else {
        let mut reader = BufReader::new(file);
        let metadata = read_stream_metadata(&mut reader).map_err(|e| corrupt(&e))?;
        let pandas = metadata.custom_schema_metadata.as_ref().and_then(|m| m.get("pandas"));
        let mut state = start(&metadata.schema, PandasMeta::parse(pandas.map(|p| p.as_str())));
        for message in StreamReader::new(reader, metadata, None) {
            match message.map_err(|e| corrupt(&e))? {
                StreamState::Some(batch) => {
                    batches += 1;
                    if !on_batch(&mut state, batch.columns()) {
                        break;
                    }
                }
                // A file does not wait for more data: its end is the stream's end.
                StreamState::Waiting => break,
            }
        }
        Ok((state, batches))
    }
}

fn profile(file: &File) -> Result<Profile, FormatError> {
    let (table, batches) = read_batches(file, TableStats::new, |table, columns| {
        for (i, array) in columns.iter().enumerate() {
            table.push(i, array.as_ref());
        }
        table.rows_done(columns.first().map_or(0, |a| a.len()) as u64);
        true
    })?;
    Ok(table.finish(batches))
}

fn preview(file: &File, rows: usize) -> Result<Preview, FormatError> {
    let (preview, _) = read_batches(
        file,
        |schema, pandas| PreviewRows::new(schema, &pandas, rows),
        |preview, columns| {
            preview.push(columns);
            !preview.is_full()
        },
    )?;
    Ok(preview.finish())
}

/// Copies the record batches of an IPC stream into an IPC file (polars scans files only).
fn stream_to_file(file: &File, out: &mut File) -> Result<(), FormatError> {
    use polars_arrow::io::ipc::write::{FileWriter, WriteOptions};
    use polars_arrow::record_batch::RecordBatchT;
    let failed = |e: &dyn std::fmt::Display| FormatError::Corrupt(format!("could not copy the Arrow stream: {e}"));
    let mut error = None;
    let ((writer, _), _) = read_batches(
        file,
        |schema, _| {
            let schema = std::sync::Arc::new(schema.clone());
            let options = WriteOptions { compression: None };
            (FileWriter::try_new(&mut *out, schema.clone(), None, options), schema)
        },
        |(writer, schema), columns| {
            let height = columns.first().map_or(0, |a| a.len());
            let result = match writer {
                Ok(w) => RecordBatchT::try_new(height, schema.clone(), columns.to_vec())
                    .and_then(|batch| w.write(&batch, None))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(()) => true,
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        },
    )?;
    if let Some(e) = error {
        return Err(failed(&e));
    }
    writer.map_err(|e| failed(&e))?.finish().map_err(|e| failed(&e))
}
