-- AuditEvents (about 2.4 KB each, past the TOAST threshold) are compressed with lz4 where the
-- server has it (PostgreSQL built with lz4, as Debian's packages and the official images are):
-- with pglz, compressing them took about 7% of PostgreSQL's CPU while every request records an
-- event. PGlite has no lz4 and keeps pglz. Only the column's setting changes (no rewrite): events
-- stored before keep their compression, and the content's text, which the chain hashes, is the same.
DO $$
BEGIN
  ALTER TABLE "audit_events" ALTER COLUMN "content" SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  NULL;
END $$;
