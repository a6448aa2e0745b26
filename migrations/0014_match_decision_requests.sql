ALTER TABLE "match_decisions" ADD COLUMN "request_hash" text;--> statement-breakpoint
ALTER TABLE "match_decisions" ADD COLUMN "pending" text;--> statement-breakpoint
CREATE INDEX "match_decisions_request_idx" ON "match_decisions" USING btree ("client_id","request_hash","created");