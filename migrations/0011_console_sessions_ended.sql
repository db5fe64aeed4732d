-- Console sessions signed out before their cookie expires: every replica refuses them at once
-- (the cookie itself is signed, not stored, so an ended one must be remembered until it expires).
CREATE TABLE console_sessions_ended (
    session_id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL  -- unix seconds: after this the cookie is refused anyway
);
