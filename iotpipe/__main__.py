"""``python -m iotpipe`` is the ``iotpipe`` command."""

from iotpipe.cli import main

main()
