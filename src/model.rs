//! The service's data types: file records, validated file names and session ids, and the JSON shapes returned to clients.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The id of the user a token was issued for (the JWT `sub`), always positive.
pub type UserId = i64;

/// A file as the catalog keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: Uuid,
    pub user_id: UserId,
    pub file_name: String,
    pub storage_uri: String,
    pub storage_type: String,
    pub description: String,
    pub summary: String,
    /// The stored file's extension (`csv`, `xlsx`…), lower case: it names the format
    /// and ends the stored object's name. The catalog's column is `format`.
    pub extension: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub row_count: u64,
    pub column_count: u64,
    /// The analysis profile as JSON (see `analysis::Profile`); empty in listings.
    pub profile_json: String,
    pub created_at: DateTime<Utc>,
    /// Last change of the record (rename, description, content).
    pub updated_at: DateTime<Utc>,
    /// This version of the file: new on every change (see [`new_rev`]).
    pub rev: String,
    /// Earlier revs, newest first (at most [`MAX_REV_HISTORY`]): a version whose history
    /// holds another's rev descends from it, which is how sync tells an update from a conflict.
    pub rev_history: Vec<String>,
    /// The instance this version was made on.
    pub origin: String,
}

/// How many earlier revs a record remembers.
pub const MAX_REV_HISTORY: usize = 100;

/// A fresh rev: 32 hex digits.
pub fn new_rev() -> String {
    Uuid::new_v4().simple().to_string()
}

impl FileRecord {
    /// The history of the version that follows this one.
    pub fn next_history(&self) -> Vec<String> {
        std::iter::once(self.rev.clone())
            .chain(self.rev_history.iter().cloned())
            .filter(|r| !r.is_empty())
            .take(MAX_REV_HISTORY)
            .collect()
    }

    /// Whether this version is `rev` or descends from it.
    pub fn knows(&self, rev: &str) -> bool {
        self.rev == rev || self.rev_history.iter().any(|r| r == rev)
    }
}

/// A file as instances exchange it in the change feed: the whole record with its
/// version, without what is local to an instance (storage URI, active sessions).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncRecord {
    pub id: Uuid,
    pub user_id: UserId,
    pub file_name: String,
    pub description: String,
    /// See [`FileRecord::extension`]; `format` on the wire.
    #[serde(rename = "format")]
    pub extension: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub summary: String,
    pub row_count: u64,
    pub column_count: u64,
    /// The analysis profile; absent in deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Box<RawValue>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub rev: String,
    #[serde(default)]
    pub rev_history: Vec<String>,
    pub origin: String,
}

impl SyncRecord {
    /// The record as sent: with the profile unless `with_profile` is false (deletes).
    pub fn from_record(r: &FileRecord, with_profile: bool) -> SyncRecord {
        SyncRecord {
            id: r.id,
            user_id: r.user_id,
            file_name: r.file_name.clone(),
            description: r.description.clone(),
            extension: r.extension.clone(),
            size_bytes: r.size_bytes,
            sha256: r.sha256.clone(),
            summary: r.summary.clone(),
            row_count: r.row_count,
            column_count: r.column_count,
            profile: with_profile
                .then(|| RawValue::from_string(r.profile_json.clone()).ok())
                .flatten(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            rev: r.rev.clone(),
            rev_history: r.rev_history.clone(),
            origin: r.origin.clone(),
        }
    }

    /// The record as this instance keeps it, stored at `storage_uri`.
    pub fn to_record(&self, storage_uri: String, storage_type: String) -> FileRecord {
        FileRecord {
            id: self.id,
            user_id: self.user_id,
            file_name: self.file_name.clone(),
            storage_uri,
            storage_type,
            description: self.description.clone(),
            summary: self.summary.clone(),
            extension: self.extension.clone(),
            size_bytes: self.size_bytes,
            sha256: self.sha256.clone(),
            row_count: self.row_count,
            column_count: self.column_count,
            profile_json: self.profile.as_ref().map(|p| p.get().to_string()).unwrap_or_default(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            rev: self.rev.clone(),
            rev_history: self.rev_history.clone(),
            origin: self.origin.clone(),
        }
    }

    /// Whether this version is `rev` or descends from it.
    pub fn knows(&self, rev: &str) -> bool {
        self.rev == rev || self.rev_history.iter().any(|r| r == rev)
    }
}

/// `FileRead`: the record as clients see it. The first four fields are the original
/// service's; the rest are additions old clients ignore. `user_id` and `storage_type`
/// stay private.
#[derive(Debug, Serialize)]
pub struct FileRead<'a> {
    pub file_name: &'a str,
    pub storage_uri: &'a str,
    pub description: &'a str,
    pub summary: &'a str,
    pub id: Uuid,
    pub size_bytes: u64,
    pub sha256: &'a str,
    pub format: &'a str,
    pub row_count: u64,
    pub column_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl FileRecord {
    pub fn to_read(&self) -> FileRead<'_> {
        FileRead {
            file_name: &self.file_name,
            storage_uri: &self.storage_uri,
            description: &self.description,
            summary: &self.summary,
            id: self.id,
            size_bytes: self.size_bytes,
            sha256: &self.sha256,
            format: &self.extension,
            row_count: self.row_count,
            column_count: self.column_count,
            created_at: self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            updated_at: self.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

/// Which of a user's files a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// At most this many (1–1000); `None`: all of them.
    pub limit: Option<u32>,
    pub offset: u64,
    /// Only names starting with this (exact, case-sensitive).
    pub name_prefix: Option<String>,
}

/// A change to a file's record: a rename (with the stored object's new URI) and/or a
/// new description.
#[derive(Debug, Clone, Default)]
pub struct FileUpdate {
    pub rename: Option<(String, String)>,
    pub description: Option<String>,
}

/// Longest name in characters and in UTF-8 bytes. 200 bytes plus the `{user_id}_`
/// prefix and extension keeps the stored name under the common 255-byte limit.
pub const MAX_NAME_CHARS: usize = 128;
pub const MAX_NAME_BYTES: usize = 200;

/// Checks a user-chosen file name against the naming rules of the spec and returns it
/// unchanged. Only letters (any script), digits, space and `_ - . ( )` are allowed, so a
/// valid name can never address anything outside the storage folder.
pub fn validate_file_name(name: &str) -> Result<&str> {
    let invalid = |why: String| Error::invalid("invalid_file_name", format!("file_name {name:?} is not valid: {why}"));
    if name.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "it has {chars} characters; at most {MAX_NAME_CHARS} are allowed"
        )));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "it is {} bytes of UTF-8; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    if name.starts_with('.') || name.starts_with(' ') {
        return Err(invalid("it must not start with '.' or a space".into()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.' | '(' | ')')))
    {
        return Err(invalid(format!(
            "{bad:?} is not allowed; use letters, digits, space and _ - . ( )"
        )));
    }
    Ok(name)
}

/// Parses a session id, which must be a UUID.
pub fn parse_session_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| Error::invalid("invalid_session_id", format!("session id {raw:?} is not a UUID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_of_any_script() {
        for ok in ["sales", "Sales 2024 (v2).final", "é_中文-1", "a", &"x".repeat(128)] {
            assert!(validate_file_name(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn refuses_path_tricks_and_oversize() {
        for bad in [
            "",
            ".hidden",
            " lead",
            "a/b",
            "..",
            "../x",
            "a\\b",
            "a\0b",
            "a:b",
            "tab\there",
            &"x".repeat(129),
            &"é".repeat(101),
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn session_ids_must_be_uuids() {
        assert!(parse_session_id("7d4a3f0e-9c1b-4a8e-bf6a-2f0f4b1f6c11").is_ok());
        assert!(parse_session_id("not-a-uuid").is_err());
    }
}
