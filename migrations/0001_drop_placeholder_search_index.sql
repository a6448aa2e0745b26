DROP TABLE "sp_date" CASCADE;--> statement-breakpoint
DROP TABLE "sp_number" CASCADE;--> statement-breakpoint
DROP TABLE "sp_quantity" CASCADE;--> statement-breakpoint
DROP TABLE "sp_reference" CASCADE;--> statement-breakpoint
DROP TABLE "sp_string" CASCADE;--> statement-breakpoint
DROP TABLE "sp_token" CASCADE;--> statement-breakpoint
DROP TABLE "sp_uri" CASCADE;