-- A delete's origin is the instance that made the delete. Tombstones written before this
-- carried the deleted file's creator instead, so a delete made on another instance never
-- reached the creator. Who made those deletes is not recorded: their origin becomes ''
-- (no instance's), so every reader receives them once; a delete that reaches the
-- instance that made it finds the file already gone and is skipped.
UPDATE changes
   SET origin = '', tombstone = json_set(tombstone, '$.origin', '')
 WHERE op = 'delete' AND tombstone IS NOT NULL;

-- Sync asks which contents an instance already holds, by SHA-256, for every file it sends.
CREATE INDEX idx_files_sha256 ON files (sha256);
