-- Issue 4, retention: events past the retention period are archived (src/audit/archive.ts) and
-- then removed from the database, and only that way. A row of the trail may be deleted only
-- (1) with baton.audit_archiving set to 'on' for the transaction, and (2) when its chain position
-- lies in an archive segment inserted by this very transaction. UPDATE and TRUNCATE stay refused
-- (ZA001), as do changes to checkpoints, signing keys and the segments themselves.
CREATE FUNCTION audit_reject_change_unless_archived() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  archived_position bigint;
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('baton.audit_archiving', true) = 'on' THEN
    IF TG_TABLE_NAME = 'audit_chain' THEN
      archived_position := OLD.position;
    ELSIF TG_TABLE_NAME = 'audit_events' THEN
      SELECT c.position INTO archived_position FROM audit_chain c WHERE c.event_seq = OLD.seq;
    ELSE
      -- The FHIR store's copy of a sealed AuditEvent (its triggers fire for AuditEvent rows only).
      SELECT c.position INTO archived_position FROM audit_events e JOIN audit_chain c ON c.event_seq = e.seq WHERE e.event_id = OLD.id;
    END IF;
    IF EXISTS (
      SELECT 1 FROM audit_archive_segments s
      WHERE s.archived_txid = pg_current_xact_id() AND archived_position BETWEEN s.from_position AND s.to_position
    ) THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'The audit trail is append-only: % on % is refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'ZA001';
END
$$;
--> statement-breakpoint
CREATE OR REPLACE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
CREATE OR REPLACE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
CREATE OR REPLACE TRIGGER resources_audit_event_append_only BEFORE UPDATE OR DELETE ON resources FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent') EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
CREATE OR REPLACE TRIGGER resource_history_audit_event_append_only BEFORE UPDATE OR DELETE ON resource_history FOR EACH ROW WHEN (OLD.resource_type = 'AuditEvent') EXECUTE FUNCTION audit_reject_change_unless_archived();
--> statement-breakpoint
-- A segment is accepted only as the next piece of the sealed chain: it starts where the last one
-- ended (chain hash included), ends at a checkpoint whose chain hash and event it matches, leaves
-- the chain head in place (the sealer continues from it) and names this transaction.
CREATE FUNCTION audit_check_archive_segment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  last_to bigint;
  last_chain_hash text;
BEGIN
  SELECT s.to_position, s.chain_hash INTO last_to, last_chain_hash FROM audit_archive_segments s ORDER BY s.to_position DESC LIMIT 1;
  IF NEW.from_position <> coalesce(last_to, 0) + 1 OR NEW.previous_chain_hash <> coalesce(last_chain_hash, repeat('0', 64)) THEN
    RAISE EXCEPTION 'An archive segment must start where the last one ended (position %)', coalesce(last_to, 0) USING ERRCODE = 'ZA002';
  END IF;
  IF NEW.to_position < NEW.from_position
    OR NOT EXISTS (SELECT 1 FROM audit_checkpoints cp WHERE cp.position = NEW.to_position AND cp.chain_hash = NEW.chain_hash)
    OR NOT EXISTS (
      SELECT 1 FROM audit_chain c
      WHERE c.position = NEW.to_position AND c.chain_hash = NEW.chain_hash AND c.event_txid = NEW.last_event_txid AND c.event_seq = NEW.last_event_seq
    ) THEN
    RAISE EXCEPTION 'An archive segment must end at a checkpoint of the chain' USING ERRCODE = 'ZA002';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.position > NEW.to_position) THEN
    RAISE EXCEPTION 'An archive segment must leave the chain head in place' USING ERRCODE = 'ZA002';
  END IF;
  IF NEW.archived_txid <> pg_current_xact_id() THEN
    RAISE EXCEPTION 'An archive segment must name the transaction that inserts it' USING ERRCODE = 'ZA002';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER audit_archive_segments_check BEFORE INSERT ON audit_archive_segments FOR EACH ROW EXECUTE FUNCTION audit_check_archive_segment();
--> statement-breakpoint
CREATE TRIGGER audit_archive_segments_append_only BEFORE UPDATE OR DELETE ON audit_archive_segments FOR EACH ROW EXECUTE FUNCTION audit_reject_change();
--> statement-breakpoint
CREATE TRIGGER audit_archive_segments_no_truncate BEFORE TRUNCATE ON audit_archive_segments FOR EACH STATEMENT EXECUTE FUNCTION audit_reject_change();
