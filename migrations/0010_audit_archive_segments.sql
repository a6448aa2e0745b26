CREATE TABLE "audit_archive_segments" (
	"to_position" bigint PRIMARY KEY NOT NULL,
	"from_position" bigint NOT NULL,
	"previous_chain_hash" text NOT NULL,
	"chain_hash" text NOT NULL,
	"last_event_txid" "xid8" NOT NULL,
	"last_event_seq" bigint NOT NULL,
	"file" text NOT NULL,
	"sha256" text NOT NULL,
	"archived_txid" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"archived_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "audit_archive_segments_from_position_unique" UNIQUE("from_position")
);
