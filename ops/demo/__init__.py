"""``make demo`` / ``iotpipe demo``: every component as its own supervised process."""
