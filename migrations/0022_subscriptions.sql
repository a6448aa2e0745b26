CREATE TABLE "subscription_event_counters" (
	"subscription_id" text PRIMARY KEY NOT NULL,
	"event_count" bigint DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "subscription_events" (
	"subscription_id" text NOT NULL,
	"event_number" bigint NOT NULL,
	"focus_type" text,
	"focus_id" text,
	"focus_version" integer,
	"focus_reference" text,
	"method" text,
	"additional_context" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"occurred" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "subscription_events_subscription_id_event_number_pk" PRIMARY KEY("subscription_id","event_number")
);
--> statement-breakpoint
CREATE TABLE "subscriptions" (
	"id" text PRIMARY KEY NOT NULL,
	"client_id" text NOT NULL,
	"client_kind" text NOT NULL,
	"scopes" text[] NOT NULL,
	"topic" text NOT NULL,
	"filters" jsonb NOT NULL,
	"status" text NOT NULL,
	"endpoint" text NOT NULL,
	"headers" jsonb NOT NULL,
	"content" text NOT NULL,
	"content_type" text NOT NULL,
	"heartbeat_seconds" integer,
	"timeout_seconds" integer NOT NULL,
	"max_count" integer NOT NULL,
	"delivered_count" bigint DEFAULT 0 NOT NULL,
	"lease_owner" text,
	"lease_until" timestamp with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"failing_since" timestamp with time zone,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"next_heartbeat_at" timestamp with time zone,
	"created" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "subscriptions_topic_idx" ON "subscriptions" USING btree ("topic","status");--> statement-breakpoint
CREATE INDEX "subscriptions_due_idx" ON "subscriptions" USING btree ("status","next_attempt_at");