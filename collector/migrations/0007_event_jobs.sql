-- The job a finding hit (comma-separated where it names no GPU and several jobs share the node).
ALTER TABLE events ADD COLUMN job VARCHAR;
