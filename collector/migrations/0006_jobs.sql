-- Who owns each GPU (agent/jobs/). gpu_jobs holds each node's looks at its GPUs, written when
-- they change (and after a collector restart): one row per GPU and job, a GPU with none a row
-- with job NULL. A look holds until the node's next one; job_spans joins them into intervals.
CREATE TABLE gpu_jobs (
    node VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    gpu VARCHAR NOT NULL,
    job VARCHAR,
    source VARCHAR,
    attrs MAP(VARCHAR, VARCHAR)
);

-- The processes on each GPU at each stored look (at least one a minute).
CREATE TABLE gpu_processes (
    node VARCHAR NOT NULL,
    time TIMESTAMP NOT NULL,
    gpu VARCHAR NOT NULL,
    pid BIGINT NOT NULL,
    name VARCHAR,
    job VARCHAR,
    used_memory_bytes BIGINT,
    sm_util_percent DOUBLE
);

-- One row per node, GPU and job for each unbroken run of looks that list it: from the first
-- look to the node's next look that does not (NULL: still running, as far as stored).
CREATE VIEW job_spans AS
WITH looks AS (
    SELECT node, time, row_number() OVER (PARTITION BY node ORDER BY time) AS look,
           lead(time) OVER (PARTITION BY node ORDER BY time) AS next
    FROM (SELECT DISTINCT node, time FROM gpu_jobs)
),
listed AS (
    SELECT j.node, j.gpu, j.job, j.source, j.attrs, l.time, l.next,
           l.look - row_number() OVER (PARTITION BY j.node, j.gpu, j.job ORDER BY l.time) AS run
    FROM gpu_jobs j JOIN looks l USING (node, time)
    WHERE j.job IS NOT NULL
)
SELECT job, any_value(source) AS source, node, gpu, arg_max(attrs, time) AS attrs,
       min(time) AS start_time,
       CASE WHEN count(next) = count(*) THEN max(next) END AS end_time
FROM listed
GROUP BY job, node, gpu, run;
