-- Upload sessions on a store with multipart uploads (S3) keep their whole parts in one
-- multipart upload that spans requests, and only a trailing piece shorter than a part
-- as objects of their own. Part numbers follow offsets, so two requests writing the
-- same offset would write the same part: one request at a time holds the session
-- (`writer` until `writer_until`, renewed while it writes).
ALTER TABLE uploads ADD COLUMN multipart_id TEXT;
ALTER TABLE uploads ADD COLUMN writer TEXT;
ALTER TABLE uploads ADD COLUMN writer_until BIGINT;
-- NULL: the part is an object under `part_key`; else the part of the session's
-- multipart upload with this number, `part_key` holding what the store answered for it.
ALTER TABLE upload_parts ADD COLUMN part_number BIGINT;
