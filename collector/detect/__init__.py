"""The bottleneck detector: vectorised SQL over every node and device at once, findings with evidence."""
