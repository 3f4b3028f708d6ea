-- Shadow routing: a copy's row names the generation it copies.
ALTER TABLE generations ADD COLUMN shadow_of TEXT;
CREATE INDEX IF NOT EXISTS generations_shadow_of ON generations (shadow_of);
