//! TEMPORARY stub while the real analysis module is written.
use serde::{Deserialize, Serialize};
#[derive(Clone, Copy, Debug)]
pub enum Format { Csv, Tsv }
impl Format { pub fn from_extension(ext: &str) -> Option<Format> { match ext.to_ascii_lowercase().as_str() { "csv" => Some(Format::Csv), "tsv" => Some(Format::Tsv), _ => None } } }
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile { pub row_count: u64, pub column_count: u64, pub columns: Vec<String> }
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError { #[error("the file is empty")] Empty, #[error("line {line}: {message}")] Malformed { line: u64, message: String }, #[error(transparent)] Io(#[from] std::io::Error) }
pub fn profile_path(path: &std::path::Path, _f: Format) -> Result<Profile, AnalysisError> {
    let mut r = csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| AnalysisError::Malformed{line:0,message:e.to_string()})?;
    let headers: Vec<String> = r.headers().map_err(|e| AnalysisError::Malformed{line:1,message:e.to_string()})?.iter().map(String::from).collect();
    if headers.is_empty() { return Err(AnalysisError::Empty); }
    let mut n = 0; let mut rec = csv::ByteRecord::new();
    while r.read_byte_record(&mut rec).map_err(|e| AnalysisError::Malformed{line:n+2,message:e.to_string()})? { n += 1; }
    Ok(Profile { row_count: n, column_count: headers.len() as u64, columns: headers })
}
impl Profile { pub fn summary(&self) -> String { let mut s = format!("The dataset has **{} rows** and **{} columns**.\n\nIt contains the following features:\n\n", self.row_count, self.column_count); for c in &self.columns { s.push_str(&format!("- **{c}**: `object`\n")); } s } }
