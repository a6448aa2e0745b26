CREATE TABLE "auth_assertion_jtis" (
	"client_id" text NOT NULL,
	"jti" text NOT NULL,
	"expires" timestamp with time zone NOT NULL,
	CONSTRAINT "auth_assertion_jtis_client_id_jti_pk" PRIMARY KEY("client_id","jti")
);
--> statement-breakpoint
CREATE TABLE "auth_clients" (
	"client_id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"kind" text NOT NULL,
	"organization_identifiers" jsonb NOT NULL,
	"jwks" jsonb,
	"jwks_uri" text,
	"scope" text NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL,
	"disabled" boolean DEFAULT false NOT NULL
);
--> statement-breakpoint
CREATE TABLE "auth_signing_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"private_jwk" jsonb NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "auth_assertion_jtis_expires_idx" ON "auth_assertion_jtis" USING btree ("expires");