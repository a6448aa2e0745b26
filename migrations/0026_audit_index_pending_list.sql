-- drizzle-kit generated DROP INDEX + CREATE INDEX ... WITH (gin_pending_list_limit=512); the same
-- end state is reached in place, without rebuilding the index of a large trail.
ALTER INDEX "audit_index_keys_idx" RESET (fastupdate);--> statement-breakpoint
ALTER INDEX "audit_index_keys_idx" SET (gin_pending_list_limit = 512);
