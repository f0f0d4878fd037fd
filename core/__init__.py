"""The shared core: wire schema, columnar encoding, configuration, logging, transport and the types both daemons use."""
