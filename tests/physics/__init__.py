"""Paper-scale physics checks (marked slow; run with ``--run-slow``)."""
