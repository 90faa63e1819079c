-- Sign-in flows: apps that allow public client flows, their redirect URIs and
-- certificates; the codes, device codes and refresh tokens the
-- token service hands out and takes back once (only hashes of secrets are
-- kept). Times in ticks. As SQLite's 0017.

ALTER TABLE apps ADD COLUMN allow_public_client BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE apps ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE apps ADD COLUMN certificates TEXT NOT NULL DEFAULT '[]';

CREATE TABLE oauth_grants (
    key          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    kind         TEXT NOT NULL,
    client_id    TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C",
    family       TEXT COLLATE "C" NOT NULL,
    user_code    TEXT COLLATE "C" UNIQUE,
    details      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    polled_at    BIGINT
);
-- Revoked together: a sign-in's, a user's, an app's.
CREATE INDEX oauth_grants_by_family ON oauth_grants (tenant_id, family);
CREATE INDEX oauth_grants_by_user ON oauth_grants (tenant_id, user_id);
CREATE INDEX oauth_grants_by_client ON oauth_grants (tenant_id, client_id);
CREATE INDEX oauth_grants_by_expiry ON oauth_grants (expires_at);
