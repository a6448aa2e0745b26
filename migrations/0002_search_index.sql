CREATE TABLE "sp_date" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"start" timestamp with time zone NOT NULL,
	"end" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_number" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"low" numeric,
	"high" numeric
);
--> statement-breakpoint
CREATE TABLE "sp_quantity" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"low" numeric,
	"high" numeric,
	"system" text,
	"unit_code" text,
	"unit" text
);
--> statement-breakpoint
CREATE TABLE "sp_reference" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"target_type" text,
	"target_id" text,
	"reference" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_string" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"value" text NOT NULL,
	"exact" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_token" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"system" text,
	"value" text,
	"text" text,
	"type_system" text,
	"type_code" text
);
--> statement-breakpoint
CREATE TABLE "sp_uri" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"grp" integer,
	"value" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "sp_date_start_idx" ON "sp_date" USING btree ("resource_type","code","start");--> statement-breakpoint
CREATE INDEX "sp_date_end_idx" ON "sp_date" USING btree ("resource_type","code","end");--> statement-breakpoint
CREATE INDEX "sp_date_resource_idx" ON "sp_date" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_number_low_idx" ON "sp_number" USING btree ("resource_type","code","low");--> statement-breakpoint
CREATE INDEX "sp_number_resource_idx" ON "sp_number" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_quantity_low_idx" ON "sp_quantity" USING btree ("resource_type","code","low");--> statement-breakpoint
CREATE INDEX "sp_quantity_resource_idx" ON "sp_quantity" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_reference_target_idx" ON "sp_reference" USING btree ("resource_type","code","target_id","target_type");--> statement-breakpoint
CREATE INDEX "sp_reference_url_idx" ON "sp_reference" USING btree ("resource_type","code","reference") WHERE "sp_reference"."target_id" IS NULL;--> statement-breakpoint
CREATE INDEX "sp_reference_resource_idx" ON "sp_reference" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_string_value_idx" ON "sp_string" USING btree ("resource_type","code","value" text_pattern_ops);--> statement-breakpoint
CREATE INDEX "sp_string_resource_idx" ON "sp_string" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_token_value_idx" ON "sp_token" USING btree ("resource_type","code","value","system");--> statement-breakpoint
CREATE INDEX "sp_token_resource_idx" ON "sp_token" USING btree ("resource_type","resource_id","code");--> statement-breakpoint
CREATE INDEX "sp_uri_value_idx" ON "sp_uri" USING btree ("resource_type","code","value");--> statement-breakpoint
CREATE INDEX "sp_uri_resource_idx" ON "sp_uri" USING btree ("resource_type","resource_id","code");