"""Who owns each GPU: NVML's processes and their cgroups, a job-mapping folder, or a name given by hand.

Each source answers on its own (cgroup.py, mapping.py, processes.py) and
discover.py puts them together; the agent's `jobs` sampler runs it every few
seconds and the batcher sends what it saw when it changes.
"""
