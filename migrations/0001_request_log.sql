-- The request log: one row per request, and the feedback given on them.
-- Portable SQL: the same statements run on SQLite and PostgreSQL. Times are Unix
-- milliseconds (UTC), booleans 0/1, attempts and cost details JSON text.
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    key_name TEXT,
    requested_model TEXT,
    provider TEXT,
    model TEXT,
    attempts TEXT NOT NULL,
    attempt_count BIGINT NOT NULL,
    status BIGINT NOT NULL,
    error_kind TEXT,
    streamed BIGINT NOT NULL,
    cancelled BIGINT NOT NULL,
    finish_reason TEXT,
    tokens_prompt BIGINT,
    tokens_completion BIGINT,
    tokens_cached BIGINT,
    tokens_cache_write BIGINT,
    tokens_reasoning BIGINT,
    usage_estimated BIGINT NOT NULL,
    total_cost DOUBLE PRECISION,
    cost_details TEXT,
    latency_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
    generation_time_ms BIGINT,
    cache_status TEXT,
    task TEXT,
    user_id TEXT,
    ingress TEXT,
    prompt TEXT,
    answer TEXT
);
CREATE INDEX IF NOT EXISTS generations_created_at ON generations (created_at);
CREATE INDEX IF NOT EXISTS generations_key_created_at ON generations (key_name, created_at);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    generation_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    key_name TEXT,
    score DOUBLE PRECISION NOT NULL,
    label TEXT,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_generation_id ON feedback (generation_id);
CREATE INDEX IF NOT EXISTS feedback_created_at ON feedback (created_at);
