CREATE TABLE "outbound_client_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"alg" text NOT NULL,
	"private_jwk" jsonb NOT NULL,
	"public_jwk" jsonb NOT NULL,
	"created" timestamp with time zone DEFAULT now() NOT NULL
);
