//! The service's side of reconciling the catalog with the stored objects: listing them, adopting files that appeared, refreshing changed ones, forgetting missing ones, moving objects of an earlier key layout.

use sha2::{Digest, Sha256};

use super::{analysis_error, FileService};
use crate::analysis;
use crate::error::{Error, Result};
use crate::formats::{self, Format, FormatError};
use crate::metrics::metrics;
use crate::model::{FileRecord, UserId};
use crate::storage::{object_name, Content};

impl FileService {
    pub async fn stored_objects(&self) -> Result<Vec<crate::storage::StoredObject>> {
        self.with_storage(|s| s.list()).await
    }

    pub async fn object_exists(&self, object: &str) -> Result<bool> {
        let object = object.to_string();
        self.with_storage(move |s| s.exists(&object)).await
    }

    pub async fn all_files(&self) -> Result<Vec<FileRecord>> {
        self.with_catalog(|c| c.all_files()).await
    }

    /// Moves the objects an earlier release stored under other keys to their names' keys
    /// (see [`crate::storage::Storage::upgrade_keys`]), given every name the catalog
    /// holds. Blocking; at startup, before anything compares the storage with the catalog.
    pub fn upgrade_stored_keys(&self, dry_run: bool) -> Result<usize> {
        let names: Vec<String> = self
            .catalog
            .all_files()?
            .iter()
            .map(|r| object_name(r.user_id, &r.file_name, &r.extension))
            .collect();
        self.storage.upgrade_keys(&names, dry_run)
    }

    pub async fn name_claimed(&self, user: UserId, file_name: &str) -> Result<bool> {
        let name = file_name.to_string();
        self.with_catalog(move |c| c.name_claimed(user, &name)).await
    }

    /// Gives a stored object another name in the storage layout (a file dropped without a
    /// user prefix, adopted for the default user). Never overwrites.
    pub async fn move_object(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (from.to_string(), to.to_string());
        self.with_storage(move |s| {
            s.link(&from, &to)?;
            s.delete(&from)
        })
        .await
    }

    /// Catalogues a file that appeared in storage without an upload, exactly as an
    /// upload would (same summary, size, hash), but active in no session.
    /// `Error::Conflict` if the name is taken meanwhile (another replica got there first).
    pub async fn adopt_stored(&self, user: UserId, file_name: &str, extension: &str) -> Result<FileRecord> {
        let format = Format::from_extension(extension)
            .ok_or_else(|| Error::invalid("unsupported_extension", format!(".{extension} files are not supported")))?;
        let object = object_name(user, file_name, extension);
        let (profile, size, sha256) = self.analyze_stored(&object, format, extension).await?;
        let record = self
            .new_record(
                user,
                file_name.to_string(),
                String::new(),
                extension.to_string(),
                &profile,
                size,
                sha256,
            )
            .await?;
        let reserved = record.clone();
        self.with_catalog(move |c| c.reserve_upload(&reserved)).await?;
        let id = record.id;
        let committed = self.with_catalog(move |c| c.commit_upload(id, None)).await;
        self.feed_changed();
        committed
    }

    /// Re-reads a catalogued file whose bytes may have changed in storage. Returns the new
    /// record if the content changed, `None` if it is the same (only its time moved).
    pub async fn refresh_stored(&self, record: &FileRecord) -> Result<Option<FileRecord>> {
        let format = Format::from_extension(&record.extension)
            .ok_or_else(|| Error::internal(format!("stored format {:?} has no reader", record.extension)))?;
        let object = object_name(record.user_id, &record.file_name, &record.extension);
        let (profile, size, sha256) = self.analyze_stored(&object, format, &record.extension).await?;
        if size == record.size_bytes && sha256 == record.sha256 {
            // Touched, not changed (or written by sync with its remote date): no new version.
            return Ok(None);
        }
        let content = FileRecord {
            size_bytes: size,
            sha256,
            summary: profile.summary(),
            row_count: profile.row_count,
            column_count: profile.column_count,
            profile_json: serde_json::to_string(&profile).map_err(Error::internal)?,
            ..record.clone()
        };
        let user = record.user_id;
        let _guard = self.lock_user(user).await?;
        let replaced = self.with_catalog(move |c| c.replace_content(&content)).await?;
        let Some((updated, sessions)) = replaced else {
            return Ok(None);
        };
        self.feed_changed();
        for session in sessions {
            self.cache_result(self.cache.remove(user, session).await);
        }
        Ok(Some(updated))
    }

    /// Removes the record of a file whose bytes are gone from storage, with its active
    /// entries. Does nothing if the bytes are back or the record changed meanwhile.
    pub async fn forget_missing(&self, record: &FileRecord) -> Result<bool> {
        if self
            .object_exists(&object_name(record.user_id, &record.file_name, &record.extension))
            .await?
        {
            return Ok(false);
        }
        let current = self.get_file(record.user_id, &record.file_name).await.ok();
        if current.as_ref().map(|c| c.id) != Some(record.id) {
            return Ok(false);
        }
        match self.delete_file_steps(record.user_id, &record.file_name, None).await {
            Ok(_) => Ok(true),
            // Another replica watching the same folder forgot it first.
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size, SHA-256 and analysis of a stored object, read where it lies.
    async fn analyze_stored(
        &self,
        object: &str,
        format: Format,
        extension: &str,
    ) -> Result<(analysis::Profile, u64, String)> {
        let name = object.to_string();
        let file = self
            .with_storage(move |s| s.open(&name)?.map(Content::into_file).transpose())
            .await?
            .ok_or_else(|| Error::NotFound(format!("{object} is not in storage")))?;
        let _permit = self.analyses.acquire().await.map_err(Error::internal)?;
        let timer = metrics().analysis_seconds.start_timer();
        let analyzed = tokio::task::spawn_blocking(move || {
            let (size, sha256) = hash_reader(&file).map_err(FormatError::Io)?;
            formats::profile_file(&file, format).map(|profile| (profile, size, sha256))
        })
        .await;
        timer.observe_duration();
        analyzed?.map_err(|e| analysis_error(e, extension))
    }
}

/// Size and hex SHA-256 of everything `reader` gives, read in one streaming pass.
pub(super) fn hash_reader(mut reader: impl std::io::Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut reader, &mut hasher)?;
    Ok((size, hex::encode(hasher.finalize())))
}
