"""Slash-commands in pull request comments: ``/review`` or ``@<app-slug> review``.

``parse`` finds the commands in a comment, ``permissions`` decides who may run which,
``catalog`` says what each one does, and ``handler`` reads a new comment as fetch → decide → act.
Nothing here is imported by this package's ``__init__``, so ``app.handlers.pull_request`` can
ask ``app.commands.state`` whether a pull request is paused without an import cycle.
"""
