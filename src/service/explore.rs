//! Exploring one file without SQL: a page of its rows, its facets, or the whole view
//! downloaded, under the same rules as queries (the caller's file only, the bounded
//! number of queries at once, the deadline, the metrics).

use std::time::Instant;

use super::query::{prepare, record_outcome, Source};
use super::{Download, FileService};
use crate::error::{Error, Result};
use crate::model::UserId;
use crate::query::view::{self, Facets, Page, ViewSpec};
use crate::query::{Cancel, OutputFormat, XLSX_MAX_ROWS};

/// Most rows a page may hold, and what it holds unless asked.
pub const MAX_PAGE_ROWS: usize = 1_000;
pub const DEFAULT_PAGE_ROWS: usize = 100;
/// Most values (or bins) a facet may list, and what it lists unless asked.
pub const MAX_FACET_VALUES: usize = 100;
pub const DEFAULT_FACET_VALUES: usize = 10;

impl FileService {
    /// Rows `offset..offset + limit` of the view of `file_name`, with how many match.
    pub async fn view_rows(
        &self,
        user: UserId,
        file_name: &str,
        spec: ViewSpec,
        offset: u64,
        limit: usize,
    ) -> Result<Page> {
        if !(1..=MAX_PAGE_ROWS).contains(&limit) {
            return Err(Error::invalid(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_PAGE_ROWS}, not {limit}"),
            ));
        }
        self.explore(user, file_name, move |table, cancel| {
            view::page(table, &spec, offset, limit, cancel)
        })
        .await
    }

    /// Facets of the view of `file_name` (`columns`: comma-separated, all when `None`).
    pub async fn view_facets(
        &self,
        user: UserId,
        file_name: &str,
        spec: ViewSpec,
        columns: Option<String>,
        limit: usize,
    ) -> Result<Facets> {
        if !(1..=MAX_FACET_VALUES).contains(&limit) {
            return Err(Error::invalid(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_FACET_VALUES}, not {limit}"),
            ));
        }
        self.explore(user, file_name, move |table, cancel| {
            view::facets(table, &spec, columns.as_deref(), limit, cancel)
        })
        .await
    }

    /// The whole view of `file_name` written as `format`.
    pub async fn view_download(
        &self,
        user: UserId,
        file_name: &str,
        spec: ViewSpec,
        format: OutputFormat,
    ) -> Result<Download> {
        let started = Instant::now();
        let result = async {
            if format == OutputFormat::Xlsx {
                // A workbook has a row limit: count first, so an answer that cannot be
                // written whole is a clear error, not a cut file.
                let counted = spec.clone();
                let rows = self
                    .explore(user, file_name, move |table, cancel| view::row_count(table, &counted, cancel))
                    .await?;
                if rows >= XLSX_MAX_ROWS {
                    return Err(Error::invalid(
                        "too_many_rows",
                        format!(
                            "an xlsx sheet holds at most {} rows and this view has {rows}; choose csv or parquet, or filter",
                            XLSX_MAX_ROWS - 1
                        ),
                    ));
                }
            }
            let permit = self.query_permit()?;
            let source = self.explored(user, file_name).await?;
            let filename = format!("{}.{}", source.record.file_name, format.extension());
            let copies = self.copies.clone();
            self.start_download(permit, format, filename, move |out, cancel| {
                let table = prepare(&copies, vec![source], cancel)?.remove(0);
                view::download(&table, &spec, format, out, cancel)
            })
            .await
        }
        .await;
        record_outcome(&result, started);
        result
    }

    /// Runs `work` over the table of the caller's `file_name`, as a query.
    async fn explore<T: Send + 'static>(
        &self,
        user: UserId,
        file_name: &str,
        work: impl FnOnce(&crate::query::Table, &Cancel) -> std::result::Result<T, crate::query::QueryError>
            + Send
            + 'static,
    ) -> Result<T> {
        let started = Instant::now();
        let result = async {
            let permit = self.query_permit()?;
            let source = self.explored(user, file_name).await?;
            let copies = self.copies.clone();
            let cancel = Cancel::default();
            let stop = cancel.clone();
            self.with_deadline(&cancel, move || {
                let _permit = permit;
                let table = prepare(&copies, vec![source], &stop)?.remove(0);
                work(&table, &stop)
            })
            .await
        }
        .await;
        record_outcome(&result, started);
        result
    }

    async fn explored(&self, user: UserId, file_name: &str) -> Result<Source> {
        let (record, content) = self.open_content(user, file_name).await?;
        Ok(Source {
            table: "data".into(),
            record,
            content,
        })
    }
}
