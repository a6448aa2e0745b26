DROP INDEX "sp_date_start_idx";--> statement-breakpoint
DROP INDEX "sp_date_end_idx";--> statement-breakpoint
DROP INDEX "sp_string_value_idx";--> statement-breakpoint
DROP INDEX "sp_token_value_idx";--> statement-breakpoint
DROP INDEX "sp_uri_value_idx";--> statement-breakpoint
CREATE INDEX "sp_date_start_idx" ON "sp_date" USING btree ("resource_type","code","start","end","resource_id");--> statement-breakpoint
CREATE INDEX "sp_date_end_idx" ON "sp_date" USING btree ("resource_type","code","end","start","resource_id");--> statement-breakpoint
CREATE INDEX "sp_string_value_idx" ON "sp_string" USING btree ("resource_type","code","value" text_pattern_ops,"resource_id");--> statement-breakpoint
CREATE INDEX "sp_token_value_idx" ON "sp_token" USING btree ("resource_type","code","value","system","resource_id");--> statement-breakpoint
CREATE INDEX "sp_uri_value_idx" ON "sp_uri" USING btree ("resource_type","code","value","resource_id");