//! A file's reads and updates: listing, lookups, content, profile and preview, renames and descriptions, the active file of a session, and deletes.

use std::sync::Arc;

use super::{check_description, file_not_found, listing, no_active_file, stall_for_test, FileService};
use crate::analysis;
use crate::error::{Error, Result};
use crate::formats::{self, Format, FormatError};
use crate::metrics::metrics;
use crate::model::{parse_session_id, validate_file_name, FileRecord, FileUpdate, ListQuery, SyncRecord, UserId};
use crate::storage::{object_name, Content};

impl FileService {
    /// A page of the user's files, oldest first, and the total that match.
    pub async fn list_files(&self, user: UserId, query: ListQuery) -> Result<(Vec<FileRecord>, u64)> {
        listing::check_limit(&query)?;
        self.with_catalog(move |c| c.list_files(user, &query)).await
    }

    pub async fn get_file(&self, user: UserId, file_name: &str) -> Result<FileRecord> {
        let name = file_name.to_string();
        self.with_catalog(move |c| c.get_file(user, &name))
            .await?
            .ok_or_else(|| file_not_found(file_name))
    }

    /// The record and an open handle on its bytes. The handle keeps reading the same
    /// bytes even if the file is renamed or deleted meanwhile.
    pub async fn open_content(&self, user: UserId, file_name: &str) -> Result<(FileRecord, Content)> {
        let record = self.get_file(user, file_name).await?;
        let object = object_name(user, &record.file_name, &record.extension);
        let file = self.with_storage(move |s| s.open(&object)).await?;
        // Between the lookup and the open, a rename may have moved the bytes and another
        // upload may have taken the name: serve only if the record is still the same.
        let again = self.get_file(user, file_name).await.ok();
        match (file, again) {
            (Some(file), Some(again)) if again.id == record.id && again.sha256 == record.sha256 => Ok((record, file)),
            _ => Err(file_not_found(file_name)),
        }
    }

    /// Renames and/or re-describes a file. A rename moves the stored bytes without
    /// overwriting anything; active entries follow the file, and cached copies are
    /// dropped so every session sees the new record.
    pub async fn update_file(
        self: &Arc<Self>,
        user: UserId,
        file_name: &str,
        new_name: Option<String>,
        description: Option<String>,
    ) -> Result<FileRecord> {
        let file_name = file_name.to_string();
        self.to_completion(move |s| async move { s.update_file_steps(user, &file_name, new_name, description).await })
            .await
    }

    pub(super) async fn update_file_steps(
        &self,
        user: UserId,
        file_name: &str,
        new_name: Option<String>,
        description: Option<String>,
    ) -> Result<FileRecord> {
        if new_name.is_none() && description.is_none() {
            return Err(Error::invalid(
                "empty_update",
                "send at least one of `file_name` and `description`",
            ));
        }
        if let Some(name) = &new_name {
            validate_file_name(name)?;
        }
        if let Some(description) = &description {
            check_description(description)?;
        }
        let _guard = self.lock_user(user).await?;
        let current = self.get_file(user, file_name).await?;
        let old_object = object_name(user, &current.file_name, &current.extension);
        let new_object = new_name
            .as_ref()
            .filter(|n| **n != current.file_name)
            .map(|n| object_name(user, n, &current.extension));
        let mut update = FileUpdate {
            rename: None,
            description,
        };
        let mut rename = None;
        if let (Some(name), Some(object)) = (&new_name, &new_object) {
            // The name may be taken: say so before touching storage.
            let taken = name.clone();
            if self.with_catalog(move |c| c.get_file(user, &taken)).await?.is_some() {
                return Err(Error::name_taken(name));
            }
            let intent = self
                .begin_rename(user, &current.file_name, name, &current.extension)
                .await?;
            let (from, to) = (old_object.clone(), object.clone());
            if let Err(e) = self.with_storage(move |s| s.link(&from, &to)).await {
                self.end_rename(intent).await;
                return Err(e);
            }
            rename = Some(intent);
            update.rename = Some((name.clone(), self.storage.uri(object)));
            stall_for_test("rename", file_name).await;
        }
        let result = self.apply_update(user, file_name, update, old_object, new_object).await;
        if let Some(intent) = rename {
            // A rename whose commit's answer was lost may hold either name: both stored
            // names stay, and so does the note, for recovery to remove the one that no
            // record holds once it can tell.
            match &result {
                Err(e) if e.is_outcome_unknown() => {
                    tracing::warn!(file = %file_name, user, "a rename's commit lost its answer; recovery settles it");
                }
                _ => self.end_rename(intent).await,
            }
        }
        result
    }

    /// The catalog half of [`FileService::update_file`], once a new stored name (if any)
    /// is linked: switch the record, then drop whichever stored name lost.
    async fn apply_update(
        &self,
        user: UserId,
        file_name: &str,
        update: FileUpdate,
        old_object: String,
        new_object: Option<String>,
    ) -> Result<FileRecord> {
        let name = file_name.to_string();
        let updated = self.with_catalog(move |c| c.update_file(user, &name, &update)).await;
        self.feed_changed();
        let (record, sessions) = match updated {
            Ok(Some(found)) => found,
            Err(e) if e.is_outcome_unknown() => return Err(e),
            other => {
                if let Some(object) = new_object.clone() {
                    let _ = self.with_storage(move |s| s.delete(&object)).await;
                }
                return Err(other.err().unwrap_or_else(|| file_not_found(file_name)));
            }
        };
        for session in sessions {
            self.cache_result(self.cache.remove(user, session).await);
        }
        // The rename is committed: a leftover old name is logged, not reported as a
        // failed rename (the watcher would take it for a dropped-in file).
        if new_object.is_some() {
            if let Err(e) = self.with_storage(move |s| s.delete(&old_object)).await {
                tracing::warn!(error = %e, "renamed, but the old stored name could not be removed");
            }
        }
        Ok(record)
    }

    /// The stored analysis profile of a file (computed at upload), as JSON text.
    pub async fn get_profile(&self, user: UserId, file_name: &str) -> Result<String> {
        Ok(self.get_file(user, file_name).await?.profile_json)
    }

    /// The header and first `rows` rows (1–1000) of a file, read from storage.
    /// `sheet` picks a workbook's sheet (default: the sheet its profile calls the table).
    pub async fn preview(
        &self,
        user: UserId,
        file_name: &str,
        rows: usize,
        sheet: Option<String>,
    ) -> Result<analysis::Preview> {
        if !(1..=1000).contains(&rows) {
            return Err(Error::invalid(
                "invalid_rows",
                format!("rows must be between 1 and 1000, not {rows}"),
            ));
        }
        let (record, content) = self.open_content(user, file_name).await?;
        let format = Format::from_extension(&record.extension)
            .ok_or_else(|| Error::internal(format!("stored format {:?} has no reader", record.extension)))?;
        let windows_1252 = record.profile_json.contains("\"encoding\":\"windows-1252\"");
        let table_sheet = serde_json::from_str::<analysis::Profile>(&record.profile_json)
            .ok()
            .and_then(|p| p.sheet);
        let _permit = self.blocking_calls.acquire().await.map_err(Error::internal)?;
        let name = record.file_name.clone();
        tokio::task::spawn_blocking(move || {
            // A bucket's object is fetched into a temporary file first: the readers seek.
            let file = content.into_file()?;
            formats::preview_file(
                &file,
                format,
                rows,
                windows_1252,
                sheet.as_deref(),
                table_sheet.as_deref(),
            )
            .map_err(|e| match e {
                FormatError::NoSheet(detail) => Error::NotFound(detail),
                e => Error::internal(format!("previewing {name}: {e}")),
            })
        })
        .await?
    }

    /// The session no longer has an active file; idempotent.
    pub async fn clear_active(&self, user: UserId, session: &str) -> Result<()> {
        let session = parse_session_id(session)?;
        let _guard = self.lock_user(user).await?;
        self.with_catalog(move |c| c.clear_active(user, session)).await?;
        self.cache_result(self.cache.remove(user, session).await);
        Ok(())
    }

    pub async fn get_active(&self, user: UserId, session: &str) -> Result<Arc<FileRecord>> {
        let session = parse_session_id(session)?;
        if self.cache.is_pass_through() {
            // Nothing to refill: no lock needed around the catalog read. Every lookup is
            // a miss, so the hit ratio tells operators there is no cache.
            metrics().cache_misses.inc();
            let found = self.with_catalog(move |c| c.get_active(user, session)).await?;
            return found.map(Arc::new).ok_or_else(|| no_active_file(session));
        }
        if let Some(Some(hit)) = self.cache_result(self.cache.get(user, session).await) {
            metrics().cache_hits.inc();
            return Ok(hit);
        }
        metrics().cache_misses.inc();
        let _guard = self.lock_user(user).await?;
        let found = self.with_catalog(move |c| c.get_active(user, session)).await?;
        let record = Arc::new(found.ok_or_else(|| no_active_file(session))?);
        self.cache_result(self.cache.put(user, session, record.clone()).await);
        Ok(record)
    }

    pub async fn set_active(&self, user: UserId, session: &str, file_name: &str) -> Result<Arc<FileRecord>> {
        let session = parse_session_id(session)?;
        let name = file_name.to_string();
        let _guard = self.lock_user(user).await?;
        let found = self.with_catalog(move |c| c.set_active(user, session, &name)).await?;
        let record = Arc::new(found.ok_or_else(|| file_not_found(file_name))?);
        self.cache_result(self.cache.put(user, session, record.clone()).await);
        Ok(record)
    }

    /// Deletes the record and the bytes, and clears the file as active in every session.
    pub async fn delete_file(self: &Arc<Self>, user: UserId, file_name: &str) -> Result<FileRecord> {
        let file_name = file_name.to_string();
        self.to_completion(move |s| async move { s.delete_file_steps(user, &file_name, None).await })
            .await
    }

    /// Deletes a file; `tombstone` is the deleted version when the delete came by sync.
    pub(super) async fn delete_file_steps(
        &self,
        user: UserId,
        file_name: &str,
        tombstone: Option<SyncRecord>,
    ) -> Result<FileRecord> {
        let name = file_name.to_string();
        let (record, sessions) = {
            let _guard = self.lock_user(user).await?;
            let found = self
                .with_catalog(move |c| c.begin_delete(user, &name, tombstone.as_ref()))
                .await?;
            self.feed_changed();
            let (record, sessions) = found.ok_or_else(|| file_not_found(file_name))?;
            for session in &sessions {
                self.cache_result(self.cache.remove(user, *session).await);
            }
            (record, sessions)
        };
        tracing::debug!(file = %record.id, sessions = sessions.len(), "deleting");
        stall_for_test("delete", file_name).await;
        let object = object_name(user, &record.file_name, &record.extension);
        self.with_storage(move |s| s.delete(&object)).await?;
        let id = record.id;
        self.with_catalog(move |c| c.finish_delete(id)).await?;
        Ok(record)
    }
}
