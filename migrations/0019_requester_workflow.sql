CREATE TABLE "routing_rollouts" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "routing_rollouts_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"stable" integer NOT NULL,
	"candidate" integer,
	"percent" integer DEFAULT 0 NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "routing_rule_sets" (
	"version" integer PRIMARY KEY NOT NULL,
	"rules" jsonb NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" text NOT NULL,
	"reason" text
);
--> statement-breakpoint
CREATE TABLE "workflow_jobs" (
	"task_id" text PRIMARY KEY NOT NULL,
	"step" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"run_at" timestamp with time zone DEFAULT now() NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"step_started" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"state" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"last_error" jsonb,
	"breached" text[] DEFAULT '{}'::text[] NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"updated" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "workflow_quarantine" (
	"id" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"resource_type" text NOT NULL,
	"source_id" text,
	"issues" jsonb NOT NULL,
	"content" jsonb NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "routing_rollouts" ADD CONSTRAINT "routing_rollouts_stable_routing_rule_sets_version_fk" FOREIGN KEY ("stable") REFERENCES "public"."routing_rule_sets"("version") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "routing_rollouts" ADD CONSTRAINT "routing_rollouts_candidate_routing_rule_sets_version_fk" FOREIGN KEY ("candidate") REFERENCES "public"."routing_rule_sets"("version") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "workflow_jobs_due_idx" ON "workflow_jobs" USING btree ("status","run_at");--> statement-breakpoint
CREATE UNIQUE INDEX "workflow_quarantine_source_idx" ON "workflow_quarantine" USING btree ("task_id","resource_type","source_id");