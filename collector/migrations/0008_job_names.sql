-- Jobs named by hand (`ironsight jobs name`): a job over some nodes' GPUs and a time range, for
-- what no agent can place (a run started from a login shell, discovery off, a replayed trace).
-- While a name lasts it wins over what the agents found on those GPUs. Naming a GPU again over
-- the same time: the newest name wins.
CREATE TABLE job_names (
    job VARCHAR NOT NULL,
    node VARCHAR NOT NULL,
    gpu VARCHAR NOT NULL,
    start_time TIMESTAMP NOT NULL,
    end_time TIMESTAMP,  -- NULL: until named otherwise
    attrs MAP(VARCHAR, VARCHAR),
    named_at TIMESTAMP NOT NULL
);

-- The agents' looks as they sent them. gpu_jobs becomes these looks with the names laid over
-- them (collector/jobnames.py rebuilds a node's rows when either changes): the detector reads
-- gpu_jobs several times a step, and a view doing the laying costs ~6 ms a read, empty or not.
CREATE TABLE agent_jobs (
    node VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    gpu VARCHAR NOT NULL,
    job VARCHAR,
    source VARCHAR,
    attrs MAP(VARCHAR, VARCHAR)
);
INSERT INTO agent_jobs SELECT * FROM gpu_jobs;
