"""Client-side blackout measurement: a fixed-rate ICMP prober and the analysis of its samples.

The prober is a guest of its own (it holds a TAP on a client port) so the measurement
travels the same OVN datapath a real client's traffic would.
"""
