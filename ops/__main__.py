"""``python -m ops`` is the ``iotpipe`` command."""

from ops.cli import main

main()
