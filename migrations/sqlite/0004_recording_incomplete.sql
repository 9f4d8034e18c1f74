-- A call whose recording misses part of the call: the disk refused a write (full, an I/O error:
-- the rest of the call is not recorded) or could not keep up (silence in place of what the
-- recorder's queue had no room for). Set once the recorder has closed the file.

ALTER TABLE calls ADD COLUMN recording_incomplete INTEGER NOT NULL DEFAULT 0;
