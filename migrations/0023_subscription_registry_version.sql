CREATE TABLE "subscription_registry_version" (
	"singleton" boolean PRIMARY KEY DEFAULT true NOT NULL,
	"epoch" text DEFAULT gen_random_uuid()::text NOT NULL,
	"version" bigint DEFAULT 0 NOT NULL
);
