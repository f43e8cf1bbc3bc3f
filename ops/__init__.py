"""Applications on top of the stages.

The ``iotpipe`` CLI (the composition root), the demo, status, health and the
local service stack.
"""
