-- A listing's ids and revs (what tells a kept listing which records changed) read from
-- the index alone, in listing order, without the rows' summaries. Its first two columns
-- are those of the index it replaces.
CREATE INDEX idx_files_listing ON files (user_id, pk, state, file_name, id, rev);
DROP INDEX idx_files_user_id;
