-- Sign-in flows: apps that allow public client flows, their redirect URIs and
-- certificates; the codes, device codes and refresh tokens the
-- token service hands out and takes back once (only hashes of secrets are
-- kept). Times in ticks. As PostgreSQL's V14.

ALTER TABLE apps ADD COLUMN allow_public_client INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '[]';
ALTER TABLE apps ADD COLUMN certificates TEXT NOT NULL DEFAULT '[]';

CREATE TABLE oauth_grants (
    key          TEXT NOT NULL PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    kind         TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_id      TEXT,
    family       TEXT NOT NULL,
    user_code    TEXT UNIQUE,
    details      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    polled_at    INTEGER
);
-- Revoked together: a sign-in's, a user's, an app's.
CREATE INDEX oauth_grants_by_family ON oauth_grants (tenant_id, family);
CREATE INDEX oauth_grants_by_user ON oauth_grants (tenant_id, user_id);
CREATE INDEX oauth_grants_by_client ON oauth_grants (tenant_id, client_id);
CREATE INDEX oauth_grants_by_expiry ON oauth_grants (expires_at);
