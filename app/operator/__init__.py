"""What operators see, and the public does not: metrics, health detail (``endpoints.py``).

Both name repositories and what each has spent, so they are served behind ``OPERATOR_TOKEN`` on
the public port, or without one on ``OPERATOR_PORT``, a listener meant for a private network.
"""
