-- A listing's ids and revs (what tells a kept listing which records changed) read from
-- the index alone, in listing order, without the rows' summaries. idx_files_user_id stays:
-- it is part of the original design's schema.
CREATE INDEX idx_files_listing ON files (user_id, id) INCLUDE (state, file_name, public_id, rev);
