CREATE TABLE "match_attempts" (
	"client_id" text NOT NULL,
	"demographics" text NOT NULL,
	"card" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "match_decisions" (
	"id" text PRIMARY KEY NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"client_id" text NOT NULL,
	"request_id" text,
	"use_case" text NOT NULL,
	"policy_id" text NOT NULL,
	"policy_version" integer NOT NULL,
	"tier" text NOT NULL,
	"outcome" text NOT NULL,
	"patient_id" text,
	"score" numeric,
	"decision" text NOT NULL,
	"task_id" text,
	"reviewed_by" text,
	"review_reason" text,
	"reviewed" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "match_index_keys" (
	"key_hash" bigint NOT NULL,
	"patient_id" text NOT NULL,
	CONSTRAINT "match_index_keys_key_hash_patient_id_pk" PRIMARY KEY("key_hash","patient_id")
);
--> statement-breakpoint
CREATE TABLE "match_index_queue" (
	"patient_id" text PRIMARY KEY NOT NULL,
	"queued" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "match_index_records" (
	"patient_id" text PRIMARY KEY NOT NULL,
	"record" text NOT NULL,
	"key_version" integer NOT NULL,
	"families" text[] NOT NULL,
	"givens" text[] NOT NULL,
	"indexed" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "match_term_counts" (
	"field" text NOT NULL,
	"value" text NOT NULL,
	"members" integer NOT NULL,
	CONSTRAINT "match_term_counts_field_value_pk" PRIMARY KEY("field","value")
);
--> statement-breakpoint
CREATE TABLE "matching_policies" (
	"id" text NOT NULL,
	"version" integer NOT NULL,
	"body" text NOT NULL,
	"created_by" text NOT NULL,
	"reason" text,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "matching_policies_id_version_pk" PRIMARY KEY("id","version")
);
--> statement-breakpoint
ALTER TABLE "access_grants" ADD COLUMN "excluded_security" text[];--> statement-breakpoint
CREATE INDEX "match_attempts_client_demographics_idx" ON "match_attempts" USING btree ("client_id","demographics","at");--> statement-breakpoint
CREATE INDEX "match_decisions_client_created_idx" ON "match_decisions" USING btree ("client_id","created");--> statement-breakpoint
CREATE INDEX "match_decisions_task_idx" ON "match_decisions" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "match_index_keys_patient_idx" ON "match_index_keys" USING btree ("patient_id");