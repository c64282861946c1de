"""The command line's sub-commands that do more than hand over to one module.

``app/__main__.py`` keeps the argument parser and thin ``cmd_*`` functions; the work lives here.
"""
