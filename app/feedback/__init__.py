"""The feedback loop: what happened to the changes the bot decided on, and what it learns from it.

``signals`` reads effects out of GitHub's events (pure), ``registry`` stores changes and effects,
``tightening`` decides whether a repository's autonomy steps down (pure), ``report`` summarises
outcomes and calibration (pure), and ``handlers`` wires the events to them.
"""
