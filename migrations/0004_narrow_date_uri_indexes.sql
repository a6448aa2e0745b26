DROP INDEX "sp_date_start_idx";--> statement-breakpoint
DROP INDEX "sp_date_end_idx";--> statement-breakpoint
DROP INDEX "sp_uri_value_idx";--> statement-breakpoint
CREATE INDEX "sp_date_start_idx" ON "sp_date" USING btree ("resource_type","code","start");--> statement-breakpoint
CREATE INDEX "sp_date_end_idx" ON "sp_date" USING btree ("resource_type","code","end");--> statement-breakpoint
CREATE INDEX "sp_uri_value_idx" ON "sp_uri" USING btree ("resource_type","code","value");