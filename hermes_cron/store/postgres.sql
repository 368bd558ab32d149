-- Every statement the PostgreSQL store runs, by name (``postgres.py`` loads this file
-- once and calls the queries by their ``-- name:``). Parameters are psycopg's
-- ``%(name)s``. Tables:
--
--   hermes_cron_meta        key/value; ``schema_version``
--   hermes_cron_jobs        one row per job: ``record`` is the job exactly as
--                           jobs.json holds it; the other columns index it
--   hermes_cron_runs        the run ledger (RunLog), one row per run, skip or miss
--   hermes_cron_outputs     run outputs (RunOutputs)
--   hermes_cron_schedulers  heartbeats of the daemons and servers using the store
--
-- The index columns of hermes_cron_jobs (next_run_at, active, claim_owner) are
-- derived from ``record`` by hermes-cron on every write. A row changed by anyone
-- else (psql, a restore) is marked ``quarantine = 'unchecked: ...'`` and inactive by
-- a trigger, so it never fires on stale columns; the next catch-up checks it again.

-- name: schema
-- Version 1. Runs once per database, under the advisory lock (``lock_schema``).
CREATE TABLE IF NOT EXISTS hermes_cron_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS hermes_cron_jobs (
    id text PRIMARY KEY,
    -- Creation order: ``list`` shows jobs in it, as jobs.json keeps them in file order.
    seq bigserial NOT NULL UNIQUE,
    record jsonb NOT NULL,
    next_run_at timestamptz,
    -- state = scheduled and enabled, and the record is valid.
    active boolean NOT NULL DEFAULT false,
    -- Bumped by every new claim: a writer that read fence N writes only while it is N.
    fence bigint NOT NULL DEFAULT 0,
    claim_owner text,
    -- NULL, or why the row is not a valid job (never run, never rewritten).
    quarantine text,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS hermes_cron_jobs_due
    ON hermes_cron_jobs (next_run_at, seq) WHERE active;
CREATE INDEX IF NOT EXISTS hermes_cron_jobs_claimed
    ON hermes_cron_jobs (id) WHERE claim_owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS hermes_cron_jobs_quarantined
    ON hermes_cron_jobs (id) WHERE quarantine IS NOT NULL;

CREATE TABLE IF NOT EXISTS hermes_cron_runs (
    id bigserial PRIMARY KEY,
    job_id text NOT NULL,
    owner text,
    status text NOT NULL,
    -- json, not jsonb: a row reads back exactly as it was written (field order too).
    row json NOT NULL
);
CREATE INDEX IF NOT EXISTS hermes_cron_runs_job ON hermes_cron_runs (job_id, id);
CREATE INDEX IF NOT EXISTS hermes_cron_runs_running
    ON hermes_cron_runs (job_id, owner) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS hermes_cron_outputs (
    id bigserial PRIMARY KEY,
    job_id text NOT NULL,
    started_at timestamptz NOT NULL,
    body text NOT NULL
);
CREATE INDEX IF NOT EXISTS hermes_cron_outputs_job ON hermes_cron_outputs (job_id, id);

CREATE TABLE IF NOT EXISTS hermes_cron_schedulers (
    host text NOT NULL,
    pid bigint NOT NULL,
    info json NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (host, pid)
);

-- hermes-cron's own sessions set hermes_cron.writer = on (``configure``); any other
-- writer's row is left as written but taken out of service until it is checked.
CREATE OR REPLACE FUNCTION hermes_cron_outside_edit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('hermes_cron.writer', true), '') <> 'on' THEN
        NEW.active := false;
        NEW.quarantine := 'unchecked: changed outside hermes-cron';
        PERFORM pg_notify('hermes_cron', NEW.id);
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS hermes_cron_jobs_outside_edit ON hermes_cron_jobs;
CREATE TRIGGER hermes_cron_jobs_outside_edit
    BEFORE INSERT OR UPDATE ON hermes_cron_jobs
    FOR EACH ROW EXECUTE FUNCTION hermes_cron_outside_edit();

-- name: lock_schema
-- Two processes starting together on an empty database: one creates, the other waits.
SELECT pg_advisory_xact_lock(7234017283807667315);

-- name: has_meta
SELECT to_regclass('hermes_cron_meta') IS NOT NULL;

-- name: schema_version
SELECT value FROM hermes_cron_meta WHERE key = 'schema_version';

-- name: set_schema_version
INSERT INTO hermes_cron_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- name: configure
-- Every pooled session: times in UTC, our writes recognised by the trigger, and a
-- bound on every row-lock wait.
SET TIME ZONE 'UTC';
SET hermes_cron.writer = 'on';
SET lock_timeout = '10s';

-- name: now
-- The database's clock, read after the row locks are held (SPEC §10).
SELECT clock_timestamp();

-- name: all_jobs
SELECT id, record::text, quarantine FROM hermes_cron_jobs ORDER BY seq;

-- name: census_states
-- Rows hermes-cron wrote (quarantine NULL) hold checked records: count them in place.
SELECT record->>'state', count(*) FROM hermes_cron_jobs WHERE quarantine IS NULL GROUP BY 1;

-- name: census_suspects
-- The rest, with their place in the order ``all_jobs`` reads (``seq``).
SELECT n - 1, id, record::text FROM (
    SELECT id, record, quarantine, row_number() OVER (ORDER BY seq) AS n FROM hermes_cron_jobs
) AS ranked
WHERE quarantine IS NOT NULL ORDER BY n;

-- name: one_job
SELECT record::text, quarantine FROM hermes_cron_jobs WHERE id = %(id)s;

-- name: export
SELECT record FROM hermes_cron_jobs ORDER BY seq;

-- name: lock_jobs
-- The rows a mutation changes, locked in id order (two batches never deadlock).
SELECT id, record::text, fence, quarantine, claim_owner FROM hermes_cron_jobs
WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE;

-- name: lock_jobs_skip
-- The same for claims of due jobs: a row another replica is claiming right now is
-- simply not ours this round.
SELECT id, record::text, fence, quarantine, claim_owner FROM hermes_cron_jobs
WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE SKIP LOCKED;

-- name: existing_ids
SELECT id FROM hermes_cron_jobs WHERE id = ANY(%(ids)s);

-- name: write_jobs
-- Compare-and-set: each row is written only while its fence and claim owner are what
-- the writer read under the lock; the caller checks that every row came back.
WITH v AS (
    SELECT * FROM unnest(
        %(ids)s::text[], %(records)s::text[], %(next_runs)s::timestamptz[],
        %(actives)s::boolean[], %(owners)s::text[], %(fences)s::bigint[],
        %(old_fences)s::bigint[], %(old_owners)s::text[]
    ) AS v(id, record, next_run_at, active, claim_owner, fence, old_fence, old_owner)
), written AS (
    UPDATE hermes_cron_jobs AS j
    SET record = v.record::jsonb, next_run_at = v.next_run_at, active = v.active,
        claim_owner = v.claim_owner, fence = v.fence, quarantine = NULL,
        changed_at = clock_timestamp()
    FROM v
    WHERE j.id = v.id AND j.fence = v.old_fence
      AND j.claim_owner IS NOT DISTINCT FROM v.old_owner
    RETURNING j.id
)
SELECT id FROM written;

-- name: mark_quarantined
UPDATE hermes_cron_jobs SET quarantine = %(why)s, active = false WHERE id = %(id)s;

-- name: insert_job
INSERT INTO hermes_cron_jobs (id, record, next_run_at, active, claim_owner)
VALUES (%(id)s, %(record)s::jsonb, %(next_run)s, %(active)s, %(owner)s)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: delete_job
DELETE FROM hermes_cron_jobs WHERE id = %(id)s AND fence = %(fence)s RETURNING id;

-- name: notify
SELECT pg_notify('hermes_cron', %(payload)s);

-- name: catch_up_candidates
-- What catch-up may change: held claims, due or unscheduled active jobs, rows to check.
-- Each branch has its own partial index, so the cost follows what is found, not the
-- number of jobs.
SELECT id FROM hermes_cron_jobs WHERE claim_owner IS NOT NULL
UNION
SELECT id FROM hermes_cron_jobs WHERE active AND (next_run_at <= %(now)s OR next_run_at IS NULL)
UNION
SELECT id FROM hermes_cron_jobs WHERE quarantine LIKE 'unchecked%%';

-- name: due
SELECT id, next_run_at FROM hermes_cron_jobs
WHERE active AND next_run_at <= %(now)s ORDER BY next_run_at, seq;

-- name: next_due_at
SELECT min(next_run_at) FROM hermes_cron_jobs WHERE active;

-- name: upcoming
SELECT id, next_run_at FROM hermes_cron_jobs
WHERE active AND next_run_at IS NOT NULL ORDER BY next_run_at, seq LIMIT %(limit)s;

-- name: quarantine_of
SELECT quarantine FROM hermes_cron_jobs WHERE id = %(id)s;

-- name: runs_insert_running
-- The ledger rows of fires just won, in the claim's own transaction.
INSERT INTO hermes_cron_runs (job_id, owner, status, row)
SELECT * FROM unnest(%(job_ids)s::text[], %(owners)s::text[], %(statuses)s::text[],
                     %(rows)s::json[]);

-- name: runs_finish
-- A run's final row replaces the 'running' row its claim wrote (one of a fire: an
-- owner may run two fires of a job at once, under overlap "allow").
UPDATE hermes_cron_runs SET row = %(row)s::json, status = %(status)s
WHERE id = (
    SELECT id FROM hermes_cron_runs
    WHERE job_id = %(job_id)s AND owner = %(owner)s AND status = 'running'
      AND row->>'fire_at' = %(fire_at)s
    ORDER BY id LIMIT 1
)
RETURNING id;

-- name: runs_of_fire
-- The final rows one owner wrote for one fire (what an interrupted row checks first).
SELECT row FROM hermes_cron_runs
WHERE job_id = %(job_id)s AND owner = %(owner)s AND status <> 'running'
  AND row->>'fire_at' = %(fire_at)s;

-- name: runs_insert
INSERT INTO hermes_cron_runs (job_id, owner, status, row)
VALUES (%(job_id)s, %(owner)s, %(status)s, %(row)s::json)
RETURNING id;

-- name: runs_prune
-- Keep about ``keep`` rows in all (ids only grow): bounded however long it runs.
DELETE FROM hermes_cron_runs WHERE id <= %(last)s - %(keep)s;

-- name: runs_read
SELECT row FROM hermes_cron_runs ORDER BY id DESC LIMIT %(limit)s;

-- name: runs_read_job
SELECT row FROM hermes_cron_runs WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT %(limit)s;

-- name: output_insert
INSERT INTO hermes_cron_outputs (job_id, started_at, body)
VALUES (%(job_id)s, %(started)s, %(body)s)
RETURNING id;

-- name: output_prune
-- The job's newest ``keep`` outputs stay; older ones go in the writer's transaction.
DELETE FROM hermes_cron_outputs
WHERE job_id = %(job_id)s AND id <= (
    SELECT id FROM hermes_cron_outputs WHERE job_id = %(job_id)s
    ORDER BY id DESC OFFSET %(keep)s LIMIT 1
);

-- name: output_read
SELECT body FROM hermes_cron_outputs WHERE id = %(id)s;

-- name: heartbeat
INSERT INTO hermes_cron_schedulers (host, pid, info, seen_at)
VALUES (%(host)s, %(pid)s, %(info)s::json, clock_timestamp())
ON CONFLICT (host, pid) DO UPDATE SET info = EXCLUDED.info, seen_at = EXCLUDED.seen_at;

-- name: heartbeat_prune
DELETE FROM hermes_cron_schedulers WHERE seen_at < clock_timestamp() - interval '1 day';

-- name: schedulers
SELECT info FROM hermes_cron_schedulers
WHERE seen_at > clock_timestamp() - make_interval(secs => %(seconds)s)
ORDER BY seen_at DESC;
