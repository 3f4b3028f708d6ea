-- Most rows are no shadow copy: index only those that are (a NULL entry per row cost an
-- index insert on every request).
DROP INDEX IF EXISTS generations_shadow_of;
CREATE INDEX IF NOT EXISTS generations_shadow_of_set ON generations (shadow_of) WHERE shadow_of IS NOT NULL;
