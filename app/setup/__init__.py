"""First run: register the GitHub App from its manifest (``setup``) and check an installation
end to end (``doctor``).

``setup`` replaces copying ids and PEM files by hand with GitHub's manifest flow: a local page
posts the manifest built from ``app.yml`` to GitHub, GitHub sends the browser back with a
one-time code, and the code is exchanged for the App's id, key and webhook secret, which are
written beside ``.env`` and never printed. ``doctor`` then proves each piece works: the key, the
webhook secret, the gateway and the database.

Module map: :mod:`.manifest` (the manifest and GitHub's URLs), :mod:`.conversion` (the code
exchange), :mod:`.envfile` (writing ``.env`` and the key), :mod:`.page` (the local page and the
command), :mod:`.doctor` (the checks).
"""
