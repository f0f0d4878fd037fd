-- Where the collector's live detector stopped, so a restart resumes there instead of skipping steps.
CREATE TABLE detector_state (
    name VARCHAR PRIMARY KEY,
    last_step_end TIMESTAMP NOT NULL
);
