CREATE TABLE "auth_udap_registrations" (
	"client_id" text PRIMARY KEY NOT NULL,
	"san" text NOT NULL,
	"community" text NOT NULL,
	"software_statement" text NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"updated" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "auth_udap_registrations" ADD CONSTRAINT "auth_udap_registrations_client_id_auth_clients_client_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."auth_clients"("client_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "auth_udap_registrations_san_community_idx" ON "auth_udap_registrations" USING btree ("san","community");