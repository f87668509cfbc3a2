"""Benchmarks of MirrorNeuron against its peers and the limits of the machine (issue 5).

Run `python -m bench --quick` (a few minutes) or `python -m bench` (the full suite). Every figure
is printed next to the peer or limit measured in the same run, as a ratio: the client, the
server and the database share the machine's cores, so absolute numbers move with the load of
the machine while ratios measured side by side stay comparable. Benchmarks are not tests.
"""
