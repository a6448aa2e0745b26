-- Issue 5: a member's Patient or Coverage changed, so its entry in the matching index is stale.
-- Queued in the writing transaction, so the index can never miss a committed change; the index
-- (src/matching/index-store.ts) drains the queue before each match and in the background.
-- A Coverage names its member in beneficiary; a Coverage moved to another member queues both.
-- The upsert locks the queue row until the write commits, so an indexer that takes the row
-- (FOR UPDATE SKIP LOCKED) reads the member only after the change is visible.
CREATE FUNCTION match_index_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  member text;
BEGIN
  IF NEW.resource_type = 'Patient' THEN
    INSERT INTO match_index_queue (patient_id) VALUES (NEW.id) ON CONFLICT (patient_id) DO UPDATE SET queued = excluded.queued;
    RETURN NULL;
  END IF;
  FOREACH member IN ARRAY ARRAY[
    substring((NEW.content::jsonb) -> 'beneficiary' ->> 'reference' FROM '^Patient/([A-Za-z0-9.-]{1,64})$'),
    CASE WHEN TG_OP = 'UPDATE' THEN substring((OLD.content::jsonb) -> 'beneficiary' ->> 'reference' FROM '^Patient/([A-Za-z0-9.-]{1,64})$') END
  ] LOOP
    IF member IS NOT NULL THEN
      INSERT INTO match_index_queue (patient_id) VALUES (member) ON CONFLICT (patient_id) DO UPDATE SET queued = excluded.queued;
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER resources_match_index AFTER INSERT OR UPDATE ON resources FOR EACH ROW
  WHEN (NEW.resource_type IN ('Patient', 'Coverage')) EXECUTE FUNCTION match_index_enqueue();
