-- drizzle-kit generated DROP INDEX + CREATE INDEX ... WITH (fastupdate=off); the same end state
-- is reached in place, without rebuilding the index of a large trail. The entries already pending
-- are merged into the index now rather than at the next vacuum.
ALTER INDEX "audit_index_keys_idx" SET (fastupdate = off);--> statement-breakpoint
SELECT gin_clean_pending_list('audit_index_keys_idx');
