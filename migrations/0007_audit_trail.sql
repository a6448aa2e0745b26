CREATE TABLE "audit_chain" (
	"position" bigint PRIMARY KEY NOT NULL,
	"event_seq" bigint NOT NULL,
	"event_txid" "xid8" NOT NULL,
	"content_hash" text NOT NULL,
	"chain_hash" text NOT NULL,
	"sealed" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_chain_event_seq_unique" UNIQUE("event_seq")
);
--> statement-breakpoint
CREATE TABLE "audit_checkpoints" (
	"position" bigint PRIMARY KEY NOT NULL,
	"chain_hash" text NOT NULL,
	"time" timestamp with time zone NOT NULL,
	"jws" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"seq" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "audit_events_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"txid" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"event_id" text NOT NULL,
	"recorded" timestamp with time zone NOT NULL,
	"content" text NOT NULL,
	CONSTRAINT "audit_events_event_id_unique" UNIQUE("event_id")
);
--> statement-breakpoint
CREATE TABLE "audit_signing_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"private_jwk" jsonb NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "audit_events_txid_seq_idx" ON "audit_events" USING btree ("txid","seq");