-- The primary key of resources carries each row's last_updated and deleted (INCLUDE), so a scan
-- of a type's ids as of a time (export planning cuts files by counting them) reads the index
-- alone: without them, each type's count was a sequential scan of the whole table (5.8 GB at
-- 6M resources: 37 s to plan a system export). Updates change last_updated, which another index
-- holds already, so no update that was HOT becomes non-HOT. Not expressible in drizzle's schema
-- (src/db/schema.ts notes it).
ALTER TABLE "resources" DROP CONSTRAINT "resources_resource_type_id_pk";--> statement-breakpoint
ALTER TABLE "resources" ADD CONSTRAINT "resources_resource_type_id_pk" PRIMARY KEY ("resource_type", "id") INCLUDE ("last_updated", "deleted");
