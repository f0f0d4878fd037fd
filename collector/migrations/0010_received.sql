-- Remote write received (collector/receive/): each sample waits here, committed before the sender
-- hears 2xx, until it settles into its table's row (a sender spreads one scrape's series over
-- parallel requests, so a row's parts arrive seconds apart). A sample names its series' place by a
-- number: received_parts says which node, table, device and column that is.
CREATE TABLE received_parts (
    part INTEGER PRIMARY KEY,
    node VARCHAR NOT NULL,
    tbl VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    col VARCHAR NOT NULL,
    UNIQUE (node, tbl, device, col)
);

CREATE TABLE received (
    part INTEGER NOT NULL,
    time TIMESTAMP NOT NULL,
    value DOUBLE NOT NULL,
    received_at TIMESTAMP NOT NULL
);

-- Each GPU's last DCGM_FI_DEV_XID_ERRORS value settled: an XID is new when the value changes to it.
CREATE TABLE received_xid (
    node VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    xid DOUBLE NOT NULL,
    PRIMARY KEY (node, device)
);
