CREATE TABLE "export_items" (
	"job_id" text NOT NULL,
	"resource_type" text NOT NULL,
	"id" text NOT NULL,
	CONSTRAINT "export_items_job_id_resource_type_id_pk" PRIMARY KEY("job_id","resource_type","id")
);
--> statement-breakpoint
ALTER TABLE "export_items" ADD CONSTRAINT "export_items_job_id_export_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."export_jobs"("id") ON DELETE cascade ON UPDATE no action;