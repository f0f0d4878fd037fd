"""The remote-write receiver: Prometheus and vmagent as senders, for fleets that keep their exporters."""
