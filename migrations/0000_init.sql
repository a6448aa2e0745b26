CREATE TABLE "resource_history" (
	"seq" bigint GENERATED ALWAYS AS IDENTITY (sequence name "resource_history_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	"version_id" integer NOT NULL,
	"last_updated" timestamp with time zone NOT NULL,
	"deleted" boolean DEFAULT false NOT NULL,
	"method" text NOT NULL,
	"content" text NOT NULL,
	CONSTRAINT "resource_history_resource_type_id_version_id_pk" PRIMARY KEY("resource_type","id","version_id")
);
--> statement-breakpoint
CREATE TABLE "resources" (
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	"version_id" integer NOT NULL,
	"last_updated" timestamp with time zone NOT NULL,
	"deleted" boolean DEFAULT false NOT NULL,
	"content" text NOT NULL,
	CONSTRAINT "resources_resource_type_id_pk" PRIMARY KEY("resource_type","id")
);
--> statement-breakpoint
CREATE TABLE "sp_date" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"start" timestamp with time zone NOT NULL,
	"end" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_number" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"value" numeric NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_quantity" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"value" numeric NOT NULL,
	"system" text,
	"unit" text
);
--> statement-breakpoint
CREATE TABLE "sp_reference" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"target_type" text,
	"target_id" text,
	"reference" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_string" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
	"value" text NOT NULL,
	"exact" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sp_token" (
	"resource_type" text NOT NULL,
	"resource_id" text NOT NULL,
	"code" text NOT NULL,
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
	"value" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "resource_history_seq_idx" ON "resource_history" USING btree ("seq");--> statement-breakpoint
CREATE INDEX "resource_history_type_seq_idx" ON "resource_history" USING btree ("resource_type","seq");--> statement-breakpoint
CREATE INDEX "resource_history_updated_idx" ON "resource_history" USING btree ("last_updated");--> statement-breakpoint
CREATE INDEX "resources_type_updated_idx" ON "resources" USING btree ("resource_type","last_updated");--> statement-breakpoint
CREATE INDEX "sp_date_start_idx" ON "sp_date" USING btree ("resource_type","code","start");--> statement-breakpoint
CREATE INDEX "sp_date_end_idx" ON "sp_date" USING btree ("resource_type","code","end");--> statement-breakpoint
CREATE INDEX "sp_date_resource_idx" ON "sp_date" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_number_value_idx" ON "sp_number" USING btree ("resource_type","code","value");--> statement-breakpoint
CREATE INDEX "sp_number_resource_idx" ON "sp_number" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_quantity_value_idx" ON "sp_quantity" USING btree ("resource_type","code","value");--> statement-breakpoint
CREATE INDEX "sp_quantity_resource_idx" ON "sp_quantity" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_reference_target_idx" ON "sp_reference" USING btree ("resource_type","code","target_id");--> statement-breakpoint
CREATE INDEX "sp_reference_reverse_idx" ON "sp_reference" USING btree ("target_type","target_id");--> statement-breakpoint
CREATE INDEX "sp_reference_resource_idx" ON "sp_reference" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_string_value_idx" ON "sp_string" USING btree ("resource_type","code","value" text_pattern_ops);--> statement-breakpoint
CREATE INDEX "sp_string_resource_idx" ON "sp_string" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_token_value_idx" ON "sp_token" USING btree ("resource_type","code","value","system");--> statement-breakpoint
CREATE INDEX "sp_token_resource_idx" ON "sp_token" USING btree ("resource_type","resource_id");--> statement-breakpoint
CREATE INDEX "sp_uri_value_idx" ON "sp_uri" USING btree ("resource_type","code","value");--> statement-breakpoint
CREATE INDEX "sp_uri_resource_idx" ON "sp_uri" USING btree ("resource_type","resource_id");