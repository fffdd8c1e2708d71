//! Delimited text (`.csv`, `.tsv`) through the streaming CSV engine (`crate::analysis`), the
//! one format read while an upload arrives.

use std::fs::File;
use std::io::BufReader;

use super::{rewound, FileFormat, FormatError, PreviewOptions};
use crate::analysis::{self, Cell, Preview, Profile};

/// Comma- or tab-separated text, as the CSV engine's format says.
pub(super) struct Delimited(pub(super) analysis::Format);

impl FileFormat for Delimited {
    fn extensions(&self) -> &'static [&'static str] {
        match self.0 {
            analysis::Format::Csv => &["csv"],
            analysis::Format::Tsv => &["tsv"],
        }
    }

    fn key(&self) -> &'static str {
        self.extensions()[0]
    }

    fn name(&self) -> &'static str {
        "delimited text"
    }

    fn content_type(&self) -> &'static str {
        match self.0 {
            analysis::Format::Csv => "text/csv; charset=utf-8",
            analysis::Format::Tsv => "text/tab-separated-values; charset=utf-8",
        }
    }

    /// Any bytes are text to the CSV engine, which finds their encoding itself.
    fn check_content(&self, _head: &[u8], _file: &File) -> Result<(), FormatError> {
        Ok(())
    }

    fn profile(&self, file: &File) -> Result<Profile, FormatError> {
        Ok(analysis::profile_reader(rewound(file)?, self.0)?)
    }

    fn preview(&self, file: &File, options: &PreviewOptions<'_>) -> Result<Preview, FormatError> {
        let file = BufReader::new(rewound(file)?);
        Ok(analysis::preview_reader(
            file,
            self.0,
            options.rows,
            options.windows_1252,
        )?)
    }

    fn read_rows(
        &self,
        file: &File,
        profile: &Profile,
        row: &mut dyn FnMut(&[Cell<'_>]) -> bool,
    ) -> Result<u64, FormatError> {
        let file = BufReader::with_capacity(1 << 16, rewound(file)?);
        Ok(analysis::read_rows(file, self.0, profile, row)?)
    }

    fn streaming(&self) -> Option<analysis::Format> {
        Some(self.0)
    }
}
