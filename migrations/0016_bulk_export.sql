CREATE TABLE "export_files" (
	"job_id" text NOT NULL,
	"file_no" integer NOT NULL,
	"kind" text NOT NULL,
	"resource_type" text NOT NULL,
	"after_id" text,
	"last_id" text,
	"count" integer NOT NULL,
	CONSTRAINT "export_files_job_id_file_no_pk" PRIMARY KEY("job_id","file_no")
);
--> statement-breakpoint
CREATE TABLE "export_jobs" (
	"id" text PRIMARY KEY NOT NULL,
	"client_id" text NOT NULL,
	"client_kind" text NOT NULL,
	"scopes" text[] NOT NULL,
	"kind" text NOT NULL,
	"group_id" text,
	"request_url" text NOT NULL,
	"parameters" jsonb NOT NULL,
	"messages" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"transaction_time" timestamp with time zone NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"types" text[],
	"planned" integer DEFAULT 0 NOT NULL,
	"error" jsonb,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"not_before" timestamp with time zone DEFAULT now() NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"updated" timestamp with time zone DEFAULT now() NOT NULL,
	"completed" timestamp with time zone,
	"expires" timestamp with time zone,
	"last_polled" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "export_patients" (
	"job_id" text NOT NULL,
	"patient_id" text NOT NULL,
	CONSTRAINT "export_patients_job_id_patient_id_pk" PRIMARY KEY("job_id","patient_id")
);
--> statement-breakpoint
CREATE TABLE "export_references" (
	"job_id" text NOT NULL,
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	CONSTRAINT "export_references_job_id_resource_type_id_pk" PRIMARY KEY("job_id","resource_type","id")
);
--> statement-breakpoint
ALTER TABLE "export_files" ADD CONSTRAINT "export_files_job_id_export_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."export_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "export_patients" ADD CONSTRAINT "export_patients_job_id_export_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."export_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "export_references" ADD CONSTRAINT "export_references_job_id_export_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."export_jobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "export_jobs_status_idx" ON "export_jobs" USING btree ("status","not_before");--> statement-breakpoint
CREATE INDEX "export_jobs_client_idx" ON "export_jobs" USING btree ("client_id","status");